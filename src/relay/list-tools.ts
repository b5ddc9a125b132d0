import type { Tool } from '@modelcontextprotocol/client'
import type { ServerConfig } from '../config/load-config.ts'
import { listAllTools, type ToolList } from '../mcp/tool-cache.ts'
import type { RelayDeps } from './deps.ts'
import { needAuthFields } from './pending-sign-in.ts'
import { selectServers } from './select-servers.ts'
import type { Caller, ListToolsResult } from './types.ts'
import type { NoToken } from './token-source.ts'
import { toolListOf } from './tool-lists.ts'
import { tokenSourceFor, withUpstream } from './upstream-access.ts'

const USAGE =
  'Call mcp_tool_call with a tool_ref from this list and input as a JSON object that matches the tool\'s inputSchema. For each server in auth_required, show its login_url to the user as a link and ask them to sign in first.'

type Failure = NoToken

/** A non-ok access outcome, thrown through the tool cache so single-flight waiters see it. */
class AccessFailure extends Error {
  readonly outcome: Failure
  constructor(outcome: Failure) {
    super(outcome.kind)
    this.outcome = outcome
  }
}

export type ServerTools = { kind: 'tools'; tools: Tool[]; source: 'cache' | 'upstream' } | Failure

/** mcp_tool_list: the tools of every selected server this user may use, with `server::tool` refs. */
export async function listTools(deps: RelayDeps, caller: Caller, request: { serverIds: string[] | undefined }): Promise<ListToolsResult> {
  const servers = selectServers(deps, request.serverIds)
  const answers = await Promise.all(servers.map(async (server) => ({ server, answer: await toolsOf(deps, caller, server) })))
  const result: ListToolsResult = { tools: [], auth_required: [], errors: [], servers: [], usage: USAGE }
  for (const { server, answer } of answers) {
    switch (answer.kind) {
      case 'tools':
        for (const tool of answer.tools) {
          result.tools.push({
            tool_ref: `${server.serverId}::${tool.name}`,
            name: tool.name,
            ...(tool.title === undefined ? {} : { title: tool.title }),
            description: tool.description ?? '',
            inputSchema: tool.inputSchema,
            ...(tool.outputSchema === undefined ? {} : { outputSchema: tool.outputSchema }),
            ...(tool.annotations === undefined ? {} : { annotations: tool.annotations }),
            server_id: server.serverId,
            server_description: server.description,
          })
        }
        result.servers.push({ server_id: server.serverId, source: answer.source, tool_count: answer.tools.length })
        break
      case 'need-auth':
        result.auth_required.push({ server_id: server.serverId, status: 'need_auth', ...needAuthFields(answer), message: answer.message })
        break
      case 'error':
        result.errors.push({ server_id: server.serverId, error: answer.message })
        break
    }
  }
  return result
}

/**
 * One server's tools for this caller. The cache is only read once the caller is known to be
 * allowed (a usable token, or a server that needs none): a user who has not signed in is told to
 * sign in and never handed the cached list another user's session filled.
 */
export async function toolsOf(deps: RelayDeps, caller: Caller, server: ServerConfig): Promise<ServerTools> {
  const source = tokenSourceFor(server)
  const owner = source.ownerOf(caller, server)
  const current = await source.current(deps, server, owner)
  if (current.kind !== 'token' && current.kind !== 'none') return current
  const mayUseCache = current.kind === 'token' || (await deps.discovery.get(server))?.kind === 'open'
  const token = current.kind === 'token' ? current.token : undefined
  const load = async (): Promise<ToolList> => {
    const access = await withUpstream(deps, caller, server, (client, timeoutMs) => listAllTools(client, timeoutMs), { token })
    if (access.kind !== 'ok') throw new AccessFailure(access)
    return access.value
  }
  try {
    if (mayUseCache) {
      const listed = await toolListOf(deps, server, owner, load, { fresh: true }).catch((error: unknown) => {
        // A load that failed was a miss too (it went upstream).
        deps.metrics.recordToolCache(server.serverId, 'miss')
        throw error
      })
      deps.metrics.recordToolCache(server.serverId, listed.source === 'cache' ? 'hit' : 'miss')
      return { kind: 'tools', tools: listed.tools, source: listed.source }
    }
    return { kind: 'tools', tools: (await load()).tools, source: 'upstream' }
  } catch (error) {
    if (error instanceof AccessFailure) return error.outcome
    throw error
  }
}
