import type { Keyv } from 'keyv'
import type { ServerConfig } from '../config/load-config.ts'
import { storeKey } from '../store/keys.ts'
import type { ServerAuth } from './discovery.ts'

/** What the relay knows about a server's sign-in: nothing needed, or how to sign in. */
export type DiscoveryRecord = { readonly kind: 'open' } | { readonly kind: 'oauth'; readonly auth: ServerAuth }

const DISCOVERY_TTL_MS = 24 * 60 * 60 * 1000

export interface DiscoveryCache {
  get(server: ServerConfig): Promise<DiscoveryRecord | undefined>
  set(server: ServerConfig, record: DiscoveryRecord): Promise<void>
}

/** Cached in the store for 24 h (DESIGN.md §5), so a warm call makes no metadata requests. */
export function createDiscoveryCache(deps: { keyv: Keyv }): DiscoveryCache {
  // The mcp_url is part of the key: editing a server's URL starts its discovery afresh.
  const key = (server: ServerConfig) => storeKey(server.serverId, server.mcpUrl)
  return {
    get: async (server) => (await deps.keyv.get(key(server))) as DiscoveryRecord | undefined,
    set: async (server, record) => {
      await deps.keyv.set(key(server), record, DISCOVERY_TTL_MS)
    },
  }
}
