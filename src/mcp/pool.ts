import type { Client } from '@modelcontextprotocol/client'
import { closeUpstream, isEraRefused, isSessionLost } from './connect.ts'

/** How to open a session for a key; `accessToken` reads the entry's current token at each request. */
export type OpenSession = (accessToken: () => string | undefined, onClose: () => void) => Promise<Client>

interface Entry {
  readonly key: string
  readonly client: Promise<Client>
  accessToken: string | undefined
  lastUsed: number
  busy: number
  /** Set when the entry leaves the pool; the session closes once no call is using it. */
  retired: { reason: string; terminate: boolean } | undefined
  closing: Promise<void> | undefined
}

export interface McpPool {
  /**
   * Runs `fn` on the connected session for `key` (tenant, user, server), opening it when there is
   * none; concurrent calls share one session. `accessToken` becomes the session's token from now on.
   */
  use<T>(key: string, accessToken: string | undefined, open: OpenSession, fn: (client: Client) => Promise<T>): Promise<T>
  /**
   * Forgets the session for `key` (a new token, a reset) and ends it upstream; a call still in
   * flight on it finishes first.
   */
  drop(key: string): Promise<void>
  size(): number
  close(): Promise<void>
}

/**
 * A bounded pool of connected SDK Clients: least-recently-used eviction beyond `maxSessions`,
 * idle expiry after `idleMs`, sessions ended upstream on eviction and at shutdown. A call that
 * finds its session lost (HTTP 404) retires that session only, so callers that retry share
 * one new session.
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
      if (entry.busy === 0 && entry.lastUsed < cutoff) void retire(entry, 'idle', true)
    }
  }, Math.max(1000, Math.min(deps.idleMs / 2, 60_000)))
  sweep.unref()

  /**
   * Takes the entry out of the pool (only this entry: the key may already hold a newer session)
   * and closes it now, or when its last call ends. Closing it under a call in flight would fail
   * that call with "connection closed".
   */
  function retire(entry: Entry, reason: string, terminate: boolean): Promise<void> {
    if (entries.get(entry.key) === entry) entries.delete(entry.key)
    entry.retired ??= { reason, terminate }
    return entry.busy === 0 ? closeEntry(entry) : Promise.resolve()
  }

  function closeEntry(entry: Entry): Promise<void> {
    const { reason, terminate } = entry.retired!
    entry.closing ??= (async () => {
      try {
        await closeUpstream(await entry.client, { terminate })
      } catch (error) {
        // A session that never opened, or that the server already ended, has nothing left to close.
        deps.logger.debug({ err: error, reason }, 'pooled session closed with an error')
      }
    })()
    return entry.closing
  }

  function evictBeyondLimit(keep?: Entry): void {
    for (const entry of entries.values()) {
      if (entries.size <= deps.maxSessions) return
      // Busy sessions stay (they are trimmed when their calls end), and so does the one just opened.
      if (entry.busy === 0 && entry !== keep) void retire(entry, 'evicted', true)
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
          retired: undefined,
          closing: undefined,
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
        evictBeyondLimit(created)
      }
      entry.accessToken = accessToken
      entry.lastUsed = deps.now()
      entry.busy++
      const current = entry
      try {
        return await fn(await current.client)
      } catch (error) {
        // A session the server forgot, or a client for a revision the server no longer speaks:
        // the caller opens another (relay/upstream-access.ts).
        if (isSessionLost(error)) void retire(current, 'lost', false)
        else if (isEraRefused(error)) void retire(current, 'era', true)
        throw error
      } finally {
        current.busy--
        current.lastUsed = deps.now()
        if (current.busy === 0 && current.retired) void closeEntry(current)
        else if (entries.size > deps.maxSessions) evictBeyondLimit()
      }
    },
    async drop(key) {
      const entry = entries.get(key)
      if (entry) await retire(entry, 'dropped', true)
    },
    size: () => entries.size,
    async close() {
      clearInterval(sweep)
      await Promise.all(
        [...entries.values()].map((entry) => {
          entries.delete(entry.key)
          entry.retired ??= { reason: 'shutdown', terminate: true }
          return closeEntry(entry)
        }),
      )
    },
  }
}
