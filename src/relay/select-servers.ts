import type { ServerConfig } from '../config/load-config.ts'
import { RelayError } from '../errors.ts'
import type { RelayDeps } from './deps.ts'

/** The servers a request names (all configured ones when it names none), in config order. */
export function selectServers(deps: RelayDeps, serverIds: readonly string[] | undefined): ServerConfig[] {
  if (!serverIds || serverIds.length === 0) return [...deps.config.servers.values()]
  const unknown = serverIds.filter((id) => !deps.config.servers.has(id))
  if (unknown.length > 0) {
    throw new RelayError('UNKNOWN_SERVER', `server_ids: no configured server is named ${unknown.map((id) => JSON.stringify(id)).join(', ')}`)
  }
  return [...new Set(serverIds)].map((id) => deps.config.servers.get(id)!)
}

export function findServer(deps: RelayDeps, serverId: string, field: string): ServerConfig {
  const server = deps.config.servers.get(serverId)
  if (!server) throw new RelayError('UNKNOWN_SERVER', `${field}: no configured server is named ${JSON.stringify(serverId)}`)
  return server
}
