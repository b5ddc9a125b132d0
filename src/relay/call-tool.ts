import {
  isInputRequiredResult,
  ProtocolError,
  ProtocolErrorCode,
  SdkError,
  SdkErrorCode,
  type CallToolResult as McpCallToolResult,
  type Client,
  type Tool,
} from '@modelcontextprotocol/client'
import type { ServerConfig } from '../config/load-config.ts'
import { RelayError } from '../errors.ts'
import { callToolAsTask } from '../mcp/task-call.ts'
import { listAllTools } from '../mcp/tool-cache.ts'
import { digestOf } from '../store/inputs.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { keepBinaryAside } from './binary-content.ts'
import type { RelayDeps } from './deps.ts'
import { answersFor, readInputRequests, type InputRequestEntry, type ReadInputRequests } from './input-requests.ts'
import { toolsOf } from './list-tools.ts'
import { needAuthFields } from './pending-sign-in.ts'
import { findServer, quote } from './select-servers.ts'
import { toolDefinitionOf } from './tool-lists.ts'
import type { Caller, CallToolResult } from './types.ts'
import { tokenSourceFor, withUpstream } from './upstream-access.ts'
import { cleanMcpMessage, userActionOf, type UserAction } from './user-action.ts'

type Request = { serverId: string; toolName: string; input: Record<string, unknown>; inputRef?: string | undefined; inputResponse?: unknown }

/** SEP-2322 rounds one call may go through before the relay stops asking (DESIGN.md §4). */
const MAX_INPUT_ROUNDS = 5

/** SEP-2243: the server's `Mcp-Param-*` / `Mcp-Name` check failed (the SDK's HEADER_MISMATCH_ERROR_CODE, not exported). */
const HEADER_MISMATCH = -32020

const UNKNOWN_INPUT_REF = 'input_ref: unknown or expired input_ref; call the tool again without it'

/** The continuation of a call the user has answered: what the retry carries. */
interface Continuation {
  readonly inputResponses: Record<string, unknown>
  readonly requestState: string | undefined
  /** Rounds so far. */
  readonly round: number
  /** Uses the input_ref up; run once, just before the retry is sent. */
  readonly take: () => Promise<void>
}

/** What one upstream attempt came to, inside withUpstream (which retries it after a refresh). */
type Attempt =
  | { kind: 'result'; result: McpCallToolResult }
  | { kind: 'rejected'; message: string }
  | { kind: 'failed'; message: string }
  | { kind: 'user-action'; action: UserAction }
  | { kind: 'task-timeout'; cancelled: boolean }
  | { kind: 'input-required'; read: ReadInputRequests; requestState: string | undefined; round: number }

/** mcp_tool_call: calls `server::tool` for this user; sign-in, upstream trouble, unknown tools and questions are answers, not errors. */
export async function callTool(deps: RelayDeps, caller: Caller, request: Request): Promise<CallToolResult> {
  const server = findServer(deps, request.serverId, 'tool_ref')
  const toolRef = `${server.serverId}::${request.toolName}`
  // The token's owner: the user, or the server's service account (its tool list is everyone's).
  const owner = tokenSourceFor(server).ownerOf(caller, server)
  const continuation = request.inputRef === undefined ? undefined : await resume(deps, caller, server, request, request.inputRef)
  const access = await withUpstream(deps, caller, server, (client, timeoutMs) => attempt(deps, owner, server, client, request, timeoutMs, continuation))
  switch (access.kind) {
    case 'need-auth':
      return { ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: server.serverId, ...needAuthFields(access), message: access.message }
    case 'error':
      return { ok: false, error_code: access.code, tool_ref: toolRef, message: access.message }
    case 'ok':
      break
  }
  const outcome = access.value
  switch (outcome.kind) {
    case 'user-action':
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
    case 'input-required':
      return askTheUser(deps, caller, server, request, toolRef, outcome)
    case 'task-timeout': {
      const cancelled = outcome.cancelled ? 'the task was cancelled' : 'the server did not confirm cancelling the task'
      return { ok: false, error_code: 'TIMEOUT', tool_ref: toolRef, message: `${server.serverId} did not finish the task in time; ${cancelled}.` }
    }
    case 'failed':
      return { ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: toolRef, message: outcome.message }
    case 'rejected':
    case 'result':
      break
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

async function attempt(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  client: Client,
  request: Request,
  timeoutMs: number,
  continuation: Continuation | undefined,
): Promise<Attempt> {
  try {
    let tool = await toolDefinition(deps, owner, server, client, request.toolName, timeoutMs, { fresh: false })
    if (client.getProtocolEra() !== 'modern' && tool?.execution?.taskSupport === 'required') {
      const outcome = await callToolAsTask(client, { name: request.toolName, arguments: request.input }, timeoutMs)
      return outcome.kind === 'result' ? checked(deps, server, tool, outcome.result) : { kind: 'task-timeout', cancelled: outcome.cancelled }
    }
    await continuation?.take()
    let round = continuation?.round ?? 0
    let answers = continuation && { inputResponses: continuation.inputResponses, requestState: continuation.requestState }
    let refreshed = false
    for (;;) {
      const params = { name: request.toolName, arguments: request.input, ...answers }
      let result: unknown
      try {
        result = await callOnce(client, params, tool, timeoutMs)
      } catch (error) {
        // SEP-2243: the server's headers check failed on a definition the relay held (its list
        // changed since): read the list afresh and send once more, as the SDK itself does.
        if (refreshed || !(error instanceof ProtocolError && error.code === HEADER_MISMATCH)) throw error
        refreshed = true
        tool = await toolDefinition(deps, owner, server, client, request.toolName, timeoutMs, { fresh: true })
        result = await callOnce(client, params, tool, timeoutMs)
      }
      if (!isInputRequiredResult(result)) return checked(deps, server, tool, result as McpCallToolResult)
      round++
      if (round > MAX_INPUT_ROUNDS) return { kind: 'failed', message: `${server.serverId} kept asking for input after ${MAX_INPUT_ROUNDS} rounds; stopping here.` }
      const read = readInputRequests(result.inputRequests ?? {}, deps.oauth.guard)
      if (read.forUser.length > 0) return { kind: 'input-required', read, requestState: result.requestState, round }
      if (read.refused.length > 0 && Object.keys(read.answered).length === 0) {
        return { kind: 'failed', message: `${server.serverId} asked for something the relay cannot give (it has no language model, and passes on only forms and https pages); the call was not completed.` }
      }
      // Nothing for the user: roots answered (none), or no requests at all (SEP-2322: the client
      // MAY retry at once). The server's state goes back as it came.
      answers = { inputResponses: read.answered, requestState: result.requestState }
    }
  } catch (error) {
    if (error instanceof ProtocolError && error.code === ProtocolErrorCode.UrlElicitationRequired) {
      return { kind: 'user-action', action: userActionOf(error, deps.oauth.guard) }
    }
    // Servers answer an unknown tool with a JSON-RPC error; whether the tool exists is
    // settled by the caller from the tool list, off the hot path.
    if (error instanceof ProtocolError && (error.code === ProtocolErrorCode.InvalidParams || error.code === ProtocolErrorCode.MethodNotFound)) {
      return { kind: 'rejected', message: cleanMcpMessage(error.message) }
    }
    throw error
  }
}

/**
 * One `tools/call`. To a 2026-07-28 server: with the tool's definition (SEP-2243: the SDK mirrors
 * `x-mcp-header` arguments into `Mcp-Param-*` headers from it), its output schema left out (the
 * relay checks structured results itself, `checked`), and an `input_required` result handed back
 * (SEP-2322: the questions go to the user through the chat). A `requestState` goes back exactly
 * as the server sent it, and none when it sent none. An `input_required` result that carries
 * neither requests nor state, which the SDK refuses, is one with nothing to answer.
 */
async function callOnce(
  client: Client,
  params: { name: string; arguments: Record<string, unknown>; inputResponses?: Record<string, unknown>; requestState?: string | undefined },
  tool: Tool | undefined,
  timeoutMs: number,
): Promise<unknown> {
  const { requestState, ...rest } = params
  const sent = requestState === undefined ? rest : { ...rest, requestState }
  if (client.getProtocolEra() !== 'modern') return client.callTool(sent, { timeout: timeoutMs })
  try {
    return await client.callTool(sent, {
      timeout: timeoutMs,
      allowInputRequired: true,
      ...(tool ? { toolDefinition: { ...tool, outputSchema: undefined } } : {}),
    })
  } catch (error) {
    if (error instanceof SdkError && (error.data as { violation?: unknown } | undefined)?.violation === 'input-required-missing-both') {
      return { resultType: 'input_required' }
    }
    throw error
  }
}

/** MCP "Tools", "Output Schema": a structured result is checked against the tool's schema (mcp/output-schemas.ts). */
function checked(deps: RelayDeps, server: ServerConfig, tool: Tool | undefined, result: McpCallToolResult): Attempt {
  if (!tool?.outputSchema || result.isError === true) return { kind: 'result', result }
  if (result.structuredContent === undefined) {
    return { kind: 'failed', message: `${server.serverId}: the tool ${quote(tool.name)} has an output schema but returned no structured result.` }
  }
  const check = deps.outputSchemas.check(server.serverId, tool.outputSchema, result.structuredContent)
  return check.valid ? { kind: 'result', result } : { kind: 'failed', message: `${server.serverId}: ${check.problem}.` }
}

/**
 * What the server said of the tool (relay/tool-lists.ts): whether it must be called as a task
 * (MCP 2025-11-25 "Tools", `execution.taskSupport`), its `x-mcp-header` declarations and its
 * output schema. A server whose tools/list fails (a JSON-RPC error) may still answer the call
 * itself; a timeout is not tried again (two of them would outlast Dify's own), nor is a refused token.
 */
async function toolDefinition(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  client: Client,
  toolName: string,
  timeoutMs: number,
  options: { fresh: boolean },
): Promise<Tool | undefined> {
  try {
    return await toolDefinitionOf(deps, server, owner, toolName, () => listAllTools(client, timeoutMs), options)
  } catch (error) {
    if (error instanceof ProtocolError) return undefined
    throw error
  }
}

/**
 * DESIGN.md §4 `USER_INPUT_REQUIRED`: the server asked questions (SEP-2322). They are kept, sealed,
 * under a new `input_ref` for this (tenant, user, server, tool, input); the model is told to ask
 * the user in the chat and call again. A round that asks only for pages answers
 * `USER_ACTION_REQUIRED` with the `input_ref` instead.
 */
async function askTheUser(
  deps: RelayDeps,
  caller: Caller,
  server: ServerConfig,
  request: Request,
  toolRef: string,
  outcome: Extract<Attempt, { kind: 'input-required' }>,
): Promise<CallToolResult> {
  const requests = outcome.read.forUser
  const inputRef = await deps.inputs.keep({
    tenant: caller.tenant,
    userId: caller.userId,
    serverId: server.serverId,
    toolName: request.toolName,
    inputDigest: digestOf(request.input),
    ...(outcome.requestState === undefined ? {} : { requestState: outcome.requestState }),
    requests,
    answered: outcome.read.answered,
    round: outcome.round,
  })
  const name = server.description || server.serverId
  const pages = requests.filter((entry): entry is Extract<InputRequestEntry, { kind: 'url' }> => entry.kind === 'url')
  if (pages.length === requests.length) {
    const page = pages[0]!
    return {
      ok: false,
      error_code: 'USER_ACTION_REQUIRED',
      status: 'need_user_action',
      server_id: server.serverId,
      tool_ref: toolRef,
      action_url: page.url,
      input_ref: inputRef,
      message: `${name} needs the user to open a page first: ${withStop(page.message)} Show the user the action_url as a link, ask them to open it and finish there, then call this tool again with the same tool_ref and input, plus this input_ref (and input_response "accept", or "decline" if they do not want to).`,
    }
  }
  return {
    ok: false,
    error_code: 'USER_INPUT_REQUIRED',
    status: 'need_user_input',
    server_id: server.serverId,
    tool_ref: toolRef,
    input_ref: inputRef,
    input_requests: requests,
    message: `${name} needs answers from the user to continue: ${requests.map((entry) => withStop(entry.message)).join(' ')} Ask the user these questions in the chat, then call this tool again with the same tool_ref and input, plus input_ref and input_response: ${requests.length === 1 ? 'an object of the answers (field name: value)' : 'an object with one entry per request key, each an object of its answers'}, or "decline" or "cancel" if the user does not want to answer. The input_ref works once, for 10 minutes.`,
  }
}

/**
 * The second call of a question round (DESIGN.md §4): the input_ref must be this caller's, for
 * this server, tool and input, and the answers must fit the questions; otherwise INVALID_INPUT,
 * and the input_ref stays usable (only the retry that reaches the server uses it up).
 */
async function resume(deps: RelayDeps, caller: Caller, server: ServerConfig, request: Request, inputRef: string): Promise<Continuation> {
  const pending = await deps.inputs.peek(inputRef)
  const belongs =
    pending !== undefined &&
    pending.tenant === caller.tenant &&
    pending.userId === caller.userId &&
    pending.serverId === server.serverId &&
    pending.toolName === request.toolName &&
    pending.inputDigest === digestOf(request.input)
  // One answer for every mismatch: another user's ref reveals nothing about the call it belongs to.
  if (!pending || !belongs) throw new RelayError('INVALID_INPUT', UNKNOWN_INPUT_REF)
  const answers = answersFor(pending.requests as InputRequestEntry[], request.inputResponse)
  if ('problem' in answers) throw new RelayError('INVALID_INPUT', answers.problem)
  let taken = false
  return {
    inputResponses: { ...pending.answered, ...answers.inputResponses },
    requestState: pending.requestState,
    round: pending.round,
    take: async () => {
      if (taken) return // a retry inside this call (after a token refresh) is the same answer
      if (!(await deps.inputs.take(inputRef))) throw new RelayError('INVALID_INPUT', UNKNOWN_INPUT_REF)
      taken = true
    },
  }
}

function withStop(text: string): string {
  const trimmed = text.trim()
  return /[.!?]$/.test(trimmed) ? trimmed : `${trimmed}.`
}
