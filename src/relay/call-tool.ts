import { CallToolResultSchema, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import type { RelayDeps } from './deps.ts'
import { toolsOf } from './list-tools.ts'
import { needAuthFields } from './pending-sign-in.ts'
import { findServer, quote } from './select-servers.ts'
import type { Caller, CallToolResult } from './types.ts'
import { withUpstream } from './upstream-access.ts'

/** mcp_tool_call: calls `server::tool` for this user; sign-in, upstream trouble and unknown tools are answers, not errors. */
export async function callTool(
  deps: RelayDeps,
  caller: Caller,
  request: { serverId: string; toolName: string; input: Record<string, unknown> },
): Promise<CallToolResult> {
  const server = findServer(deps, request.serverId, 'tool_ref')
  const toolRef = `${server.serverId}::${request.toolName}`
  const access = await withUpstream(deps, caller, server, async (client, timeoutMs) => {
    try {
      const result = await client.callTool({ name: request.toolName, arguments: request.input }, CallToolResultSchema, { timeout: timeoutMs })
      return { kind: 'result' as const, result }
    } catch (error) {
      // Servers answer an unknown tool with a JSON-RPC error; whether the tool exists is
      // settled below from the tool list, off the hot path.
      if (error instanceof McpError && (error.code === ErrorCode.InvalidParams || error.code === ErrorCode.MethodNotFound)) {
        return { kind: 'rejected' as const, message: error.message }
      }
      throw error
    }
  })
  switch (access.kind) {
    case 'need-auth':
      return { ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: server.serverId, ...needAuthFields(access), message: access.message }
    case 'error':
      return { ok: false, error_code: access.code, tool_ref: toolRef, message: access.message }
    case 'ok':
      break
  }
  // Servers built on the MCP SDK answer an unknown tool with an isError result ("Tool x not
  // found"), others with a JSON-RPC error: either way the tool list settles whether it exists.
  if (access.value.kind === 'rejected' || access.value.result.isError === true) {
    const known = await toolsOf(deps, caller, server)
    if (known.kind === 'tools' && !known.tools.some((tool) => tool.name === request.toolName)) {
      return { ok: false, error_code: 'UNKNOWN_TOOL', tool_ref: toolRef, message: `${server.serverId} has no tool named ${quote(request.toolName)}; call mcp_tool_list for the available tool_refs.` }
    }
  }
  if (access.value.kind === 'rejected') {
    return { ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: toolRef, message: `${server.serverId} rejected the call: ${access.value.message}` }
  }
  const { content, structuredContent, isError } = access.value.result
  return {
    ok: true,
    tool_ref: toolRef,
    result: { content: Array.isArray(content) ? content : [], ...(structuredContent === undefined ? {} : { structuredContent }), isError: isError === true },
  }
}
