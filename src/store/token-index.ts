import type { RedisClient } from './redis-client.ts'
import { callStore } from './store-unavailable.ts'

/**
 * The keys of the `tokens` namespace in a stable order, for the admin view of connections
 * (DESIGN.md §4, GET /admin/connections). The token store's put and remove are its only writers:
 * `add` runs before a token is written and `remove` after it is removed, so the index may name a
 * key whose token is gone (a crash in between; readers skip it) but never misses a stored token.
 *
 * Order is the byte order of the stored keys, the same on every backend: storeKey() makes
 * ASCII-only keys, and SQLite (BINARY), PostgreSQL (COLLATE "C"), Redis (ZRANGE BYLEX) and
 * JavaScript string comparison all order ASCII by byte.
 */
export interface TokenIndex {
  add(key: string): Promise<void>
  remove(key: string): Promise<void>
  /** Up to `limit` keys that start with `prefix` and sort after `after` (when given), in order. */
  range(prefix: string, after: string | undefined, limit: number): Promise<string[]>
}

/**
 * Full stored keys `k` with `from <= k < below` and `k > after`, in byte order, at most `limit`:
 * a range scan over the key column itself, so the table is its own index.
 */
export type SelectKeys = (from: string, below: string, after: string, limit: number) => Promise<string[]>

/** For backends whose keys can be read in order (memory, SQLite, PostgreSQL): nothing to maintain. */
export function createKeyRangeIndex(namespace: string, select: SelectKeys): TokenIndex {
  const head = `${namespace}:`
  return {
    add: async () => undefined,
    remove: async () => undefined,
    async range(prefix, after, limit) {
      const stored = await select(head + prefix, successor(head + prefix), head + (after ?? ''), limit)
      return stored.map((key) => key.slice(head.length))
    },
  }
}

/** The memory store's select: its Map's keys, sorted on each call (memory:// holds one process's few users). */
export function selectMapKeys(map: () => Map<string, unknown>): SelectKeys {
  return async (from, below, after, limit) =>
    [...map().keys()]
      .filter((key) => key >= from && key < below && key > after)
      .sort()
      .slice(0, limit)
}

/**
 * Redis: a sorted set of token keys (all scores 0, so ZRANGE BYLEX orders them by byte), written
 * beside each token. Tokens stored before the index existed are added once, by a SCAN, the
 * first time a process lists them, unless another process already did (a marker key says so).
 */
export function createRedisTokenIndex(client: RedisClient, namespace: string, indexKey: string): TokenIndex {
  let complete: Promise<void> | undefined
  const ensureComplete = () =>
    (complete ??= backfill(client, namespace, indexKey).catch((error: unknown) => {
      complete = undefined
      throw error
    }))
  return {
    add: (key) => callStore('redis', async () => void (await client.zAdd(indexKey, { score: 0, value: key }))),
    remove: (key) => callStore('redis', async () => void (await client.zRem(indexKey, key))),
    range: (prefix, after, limit) =>
      callStore('redis', async () => {
        await ensureComplete()
        // ZRANGE BYLEX bounds: '[' inclusive, '(' exclusive.
        const from = after !== undefined && after >= prefix ? `(${after}` : `[${prefix}`
        const below = prefix === '' ? '+' : `(${successor(prefix)}`
        return client.zRange(indexKey, from, below, { BY: 'LEX', LIMIT: { offset: 0, count: limit } })
      }),
  }
}

async function backfill(client: RedisClient, namespace: string, indexKey: string): Promise<void> {
  const marker = `${indexKey}:complete`
  if ((await client.exists(marker)) === 1) return
  // @keyv/redis stores `${namespace}::${key}`; the namespace holds no glob characters (open-store.ts).
  const head = `${namespace}::`
  for await (const keys of client.scanIterator({ MATCH: `${head}*`, COUNT: 500 })) {
    if (keys.length > 0) await client.zAdd(indexKey, keys.map((key) => ({ score: 0, value: key.slice(head.length) })))
  }
  await client.set(marker, '1')
}

/** The first string after every string that starts with `text` (text is ASCII and non-empty). */
function successor(text: string): string {
  return text.slice(0, -1) + String.fromCharCode(text.charCodeAt(text.length - 1) + 1)
}
