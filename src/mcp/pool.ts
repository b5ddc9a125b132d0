import type { Client } from '@modelcontextprotocol/sdk/client/index.js'

/** How to open a session for a key; `accessToken` reads the entry's current token at each request. */
export type OpenSession = (accessToken: () => string | undefined, onClose: () => void) => Promise<Client>

interface Entry {
  readonly key: string
  readonly client: Promise<Client>
  accessToken: string | undefined
  lastUsed: number
  busy: number
}

export interface McpPool {
  /**
   * Runs `fn` on the connected session for `key` (tenant, user, server), opening it when there is
   * none; concurrent calls share one session. `accessToken` becomes the session's token from now on.
   */
  use<T>(key: string, accessToken: string | undefined, open: OpenSession, fn: (client: Client) => Promise<T>): Promise<T>
  /** Closes and forgets the session for `key` (after a lost session, a new token, a reset). */
  drop(key: string): Promise<void>
  size(): number
  close(): Promise<void>
}

/**
 * A bounded pool of connected SDK Clients: least-recently-used eviction beyond `maxSessions`,
 * idle expiry after `idleMs`, transports closed on eviction and at shutdown.
 */
export function createMcpPool(deps: {
  maxSessions: number
  idleMs: number
  now: () => number
  logger: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void }
}): McpPool {
  // A Map keeps insertion order: re-inserting on use makes the first entry the least recently used.
  const entries = new Map<string, Entry>()

  const sweep = setInterval(() => {
    const cutoff = deps.now() - deps.idleMs
    for (const entry of entries.values()) {
      if (entry.busy === 0 && entry.lastUsed < cutoff) void closeEntry(entry, 'idle')
    }
  }, Math.max(1000, Math.min(deps.idleMs / 2, 60_000)))
  sweep.unref()

  async function closeEntry(entry: Entry, reason: string): Promise<void> {
    if (entries.get(entry.key) === entry) entries.delete(entry.key)
    try {
      const client = await entry.client
      await client.close()
    } catch (error) {
      // A session that never opened, or whose transport is already gone, has nothing left to close.
      deps.logger.debug({ err: error, reason }, 'pooled session closed with an error')
    }
  }

  function evictBeyondLimit(): void {
    for (const entry of entries.values()) {
      if (entries.size <= deps.maxSessions) return
      if (entry.busy === 0) void closeEntry(entry, 'evicted')
    }
  }

  return {
    async use(key, accessToken, open, fn) {
      let entry = entries.get(key)
      if (entry) {
        entries.delete(key)
        entries.set(key, entry)
      } else {
        const created: Entry = {
          key,
          accessToken,
          lastUsed: deps.now(),
          busy: 0,
          client: Promise.resolve().then(() =>
            open(
              () => created.accessToken,
              () => {
                if (entries.get(key) === created) entries.delete(key)
              },
            ),
          ),
        }
        entry = created
        entries.set(key, entry)
        created.client.catch(() => {
          // The caller below sees the same rejection; a session that failed to open is not kept.
          if (entries.get(key) === created) entries.delete(key)
        })
        evictBeyondLimit()
      }
      entry.accessToken = accessToken
      entry.lastUsed = deps.now()
      entry.busy++
      try {
        return await fn(await entry.client)
      } finally {
        entry.busy--
        entry.lastUsed = deps.now()
      }
    },
    async drop(key) {
      const entry = entries.get(key)
      if (entry) await closeEntry(entry, 'dropped')
    },
    size: () => entries.size,
    async close() {
      clearInterval(sweep)
      await Promise.all([...entries.values()].map((entry) => closeEntry(entry, 'shutdown')))
    },
  }
}
