import type { ServerConfig } from '../config/load-config.ts'
import { RelayError } from '../errors.ts'
import type { RelayDeps } from './deps.ts'

/** Unknown ids a message names at most; a request may carry tens of thousands. */
const MAX_NAMED = 5
const MAX_QUOTED_LENGTH = 64

/**
 * A caller's value quoted for a message, cut short: a message is one sentence however much was
 * sent, and it is logged too (an echo of a 500 KB id would be a 500 KB answer and log line).
 */
export function quote(value: string): string {
  return JSON.stringify(value.length > MAX_QUOTED_LENGTH ? `${value.slice(0, MAX_QUOTED_LENGTH)}…` : value)
}

/** The servers a request names (all configured ones when it names none), in config order. */
export function selectServers(deps: RelayDeps, serverIds: readonly string[] | undefined): ServerConfig[] {
  if (!serverIds || serverIds.length === 0) return [...deps.config.servers.values()]
  const unknown = serverIds.filter((id) => !deps.config.servers.has(id))
  if (unknown.length > 0) {
    const more = unknown.length > MAX_NAMED ? ` and ${unknown.length - MAX_NAMED} more` : ''
    throw new RelayError('UNKNOWN_SERVER', `server_ids: no configured server is named ${unknown.slice(0, MAX_NAMED).map(quote).join(', ')}${more}`)
  }
  return [...new Set(serverIds)].map((id) => deps.config.servers.get(id)!)
}

export function findServer(deps: RelayDeps, serverId: string, field: string): ServerConfig {
  const server = deps.config.servers.get(serverId)
  if (!server) throw new RelayError('UNKNOWN_SERVER', `${field}: no configured server is named ${quote(serverId)}`)
  return server
}
