import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { CallToolResultSchema, ErrorCode, McpError, type CallToolResult as McpCallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js'
import type { ServerConfig } from '../config/load-config.ts'
import { callToolAsTask } from '../mcp/task-call.ts'
import { listAllTools } from '../mcp/tool-cache.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { keepBinaryAside } from './binary-content.ts'
import { toolCacheKey, type RelayDeps } from './deps.ts'
import { toolsOf } from './list-tools.ts'
import { needAuthFields } from './pending-sign-in.ts'
import { findServer, quote } from './select-servers.ts'
import type { Caller, CallToolResult } from './types.ts'
import { tokenSourceFor, withUpstream } from './upstream-access.ts'
import { cleanMcpMessage, userActionOf, type UserAction } from './user-action.ts'

type Request = { serverId: string; toolName: string; input: Record<string, unknown> }

/** What one upstream attempt came to, inside withUpstream (which retries it after a refresh). */
type Attempt =
  | { kind: 'result'; result: McpCallToolResult }
  | { kind: 'rejected'; message: string }
  | { kind: 'user-action'; action: UserAction }
  | { kind: 'task-timeout'; cancelled: boolean }

/** mcp_tool_call: calls `server::tool` for this user; sign-in, upstream trouble and unknown tools are answers, not errors. */
export async function callTool(deps: RelayDeps, caller: Caller, request: Request): Promise<CallToolResult> {
  const server = findServer(deps, request.serverId, 'tool_ref')
  const toolRef = `${server.serverId}::${request.toolName}`
  // The token's owner: the user, or the server's service account (its tool list is everyone's).
  const owner = tokenSourceFor(server).ownerOf(caller, server)
  const access = await withUpstream(deps, caller, server, (client, timeoutMs) => attempt(deps, owner, server, client, request, timeoutMs))
  switch (access.kind) {
    case 'need-auth':
      return { ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: server.serverId, ...needAuthFields(access), message: access.message }
    case 'error':
      return { ok: false, error_code: access.code, tool_ref: toolRef, message: access.message }
    case 'ok':
      break
  }
  const outcome = access.value
  if (outcome.kind === 'user-action') {
    if (outcome.action.kind === 'refused') {
      return { ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: toolRef, message: `${server.serverId} ${outcome.action.message}.` }
    }
    return {
      ok: false,
      error_code: 'USER_ACTION_REQUIRED',
      status: 'need_user_action',
      server_id: server.serverId,
      tool_ref: toolRef,
      action_url: outcome.action.actionUrl,
      message: `${server.description || server.serverId} needs the user to open a page first: ${outcome.action.message} Show the user the action_url as a link, ask them to open it and finish there, then call this tool again with the same input.`,
    }
  }
  if (outcome.kind === 'task-timeout') {
    const cancelled = outcome.cancelled ? 'the task was cancelled' : 'the server did not confirm cancelling the task'
    return { ok: false, error_code: 'TIMEOUT', tool_ref: toolRef, message: `${server.serverId} did not finish the task in time; ${cancelled}.` }
  }
  // Servers built on the MCP SDK answer an unknown tool with an isError result ("Tool x not
  // found"), others with a JSON-RPC error: either way the tool list settles whether it exists.
  if (outcome.kind === 'rejected' || outcome.result.isError === true) {
    const known = await toolsOf(deps, caller, server)
    if (known.kind === 'tools' && !known.tools.some((tool) => tool.name === request.toolName)) {
      return { ok: false, error_code: 'UNKNOWN_TOOL', tool_ref: toolRef, message: `${server.serverId} has no tool named ${quote(request.toolName)}; call mcp_tool_list for the available tool_refs.` }
    }
  }
  if (outcome.kind === 'rejected') {
    return { ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: toolRef, message: `${server.serverId} rejected the call: ${outcome.message}` }
  }
  const { content, structuredContent, isError } = outcome.result
  const items = await keepBinaryAside(Array.isArray(content) ? content : [], {
    files: deps.files,
    tenant: caller.tenant,
    inlineBytes: deps.config.toolResultInlineBytes,
    publicBaseUrl: deps.config.publicBaseUrl,
  })
  return {
    ok: true,
    tool_ref: toolRef,
    result: { content: items, ...(structuredContent === undefined ? {} : { structuredContent }), isError: isError === true },
  }
}

async function attempt(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, client: Client, request: Request, timeoutMs: number): Promise<Attempt> {
  const params = { name: request.toolName, arguments: request.input }
  try {
    if (await needsTask(deps, owner, server, client, request.toolName, timeoutMs)) {
      const outcome = await callToolAsTask(client, params, timeoutMs)
      return outcome.kind === 'result' ? outcome : { kind: 'task-timeout', cancelled: outcome.cancelled }
    }
    return { kind: 'result', result: await client.callTool(params, CallToolResultSchema, { timeout: timeoutMs }) as McpCallToolResult }
  } catch (error) {
    if (error instanceof McpError && error.code === ErrorCode.UrlElicitationRequired) {
      return { kind: 'user-action', action: userActionOf(error, deps.oauth.guard) }
    }
    // Servers answer an unknown tool with a JSON-RPC error; whether the tool exists is
    // settled by the caller from the tool list, off the hot path.
    if (error instanceof McpError && (error.code === ErrorCode.InvalidParams || error.code === ErrorCode.MethodNotFound)) {
      return { kind: 'rejected', message: cleanMcpMessage(error.message) }
    }
    throw error
  }
}

/** With the tool cache off: the list each pooled session fetched for needsTask, once. */
const listedBySession = new WeakMap<Client, Promise<Tool[]>>()

/**
 * MCP 2025-11-25 "Tools", `execution.taskSupport`: a tool that says `required` MUST be called as
 * a task. The relay reads that from the cached tool list (one store read on a warm call; a cold
 * cache is filled with one tools/list on this session). With the cache off
 * (TOOL_LIST_CACHE_TTL_SECONDS=0), each pooled session lists once for this, rather than every call.
 */
async function needsTask(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, client: Client, toolName: string, timeoutMs: number): Promise<boolean> {
  try {
    return (await listedTools(deps, owner, server, client, timeoutMs)).some((tool) => tool.name === toolName && tool.execution?.taskSupport === 'required')
  } catch (error) {
    // A server whose tools/list fails (a JSON-RPC error) may still answer the call itself; a
    // timeout is not tried again (two of them would outlast Dify's own), nor is a refused token.
    if (error instanceof McpError && error.code !== ErrorCode.RequestTimeout) return false
    throw error
  }
}

async function listedTools(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, client: Client, timeoutMs: number): Promise<Tool[]> {
  if (deps.config.toolListCacheTtlMs > 0) {
    return (await deps.toolCache.get(toolCacheKey(server, owner), () => listAllTools(client, timeoutMs))).tools
  }
  let listed = listedBySession.get(client)
  if (!listed) {
    listed = listAllTools(client, timeoutMs)
    listedBySession.set(client, listed)
    // A failed list is not remembered: the next call on this session lists again.
    listed.catch(() => listedBySession.delete(client))
  }
  return listed
}
