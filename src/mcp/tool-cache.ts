import type { Client, Tool } from '@modelcontextprotocol/client'
import type { Keyv } from 'keyv'
import { withBudget } from './call-context.ts'
import { MAX_RESPONSE_BYTES, MAX_RESPONSE_SHAPE } from './upstream-fetch.ts'

/**
 * A server's tools/list, with the caching hints a 2026-07-28 server gives it (SEP-2549: `ttlMs`,
 * how long it stays fresh, 0 meaning at once stale; `cacheScope`, whether it is the same for
 * every user). A 2025-era server gives none.
 */
export interface ToolList {
  readonly tools: Tool[]
  readonly ttlMs?: number
  readonly cacheScope?: 'public' | 'private'
}

/** A list as loaded, with where and how long to keep it (decided by the caller from its hints). */
export interface LoadedToolList extends ToolList {
  /** The cache key it belongs under (its scope's), which may differ from the key asked for. */
  readonly key: string
  /** How long it is served as the server's current list (0: at once stale). */
  readonly freshMs: number
  /** How long it is kept at all, stale or not (0: not kept). */
  readonly keepMs: number
}

/** As stored: the list, and until when it is fresh (epoch ms, by the relay's clock). */
interface StoredToolList extends ToolList {
  readonly freshUntil: number
}

export interface ToolListCache {
  /**
   * The cached list for `key` (a stale one too with `acceptStale`), or the one `load` fetches
   * (kept under its own key for its own time): one upstream `tools/list` however many requests
   * wait for the same key in this process.
   */
  get(key: string, load: () => Promise<LoadedToolList>, options: { acceptStale: boolean }): Promise<ToolList & { source: 'cache' | 'upstream' }>
  drop(key: string): Promise<void>
  /** The scope each server's last list came with, in this process (relay/tool-lists.ts). */
  readonly scopes: Map<string, 'public' | 'private'>
  /** Each server's tools by name, from the newest list of it this process read (relay/tool-lists.ts). */
  readonly definitions: Map<string, ReadonlyMap<string, Tool>>
}

/** Per-server (or per-server-and-user) tools/list results, kept as long as each list says. */
export function createToolListCache(deps: { keyv: Keyv; now: () => number }): ToolListCache {
  const loading = new Map<string, Promise<LoadedToolList>>()
  // Loads that a drop() overtook: a load that started before a drop does not write its stale list
  // back. Only a load in flight can be overtaken, so only those are remembered (weakly): a map of
  // every key ever dropped grew by one entry per sign-in and reset for as long as the process ran.
  const overtaken = new WeakSet<Promise<LoadedToolList>>()

  return {
    async get(key, load, options) {
      // A load in flight is joined before the store is read, and again after: read first, a
      // request whose store read straddles the end of a load (the list written, the load gone
      // from `loading`) would start a second tools/list.
      let joined = loading.get(key)
      if (!joined) {
        const cached = (await deps.keyv.get(key)) as StoredToolList | undefined
        if (cached && (options.acceptStale || deps.now() < cached.freshUntil)) return { ...withoutFreshness(cached), source: 'cache' }
        joined = loading.get(key)
      }
      if (joined) {
        try {
          return { ...(await joined), source: 'upstream' }
        } catch {
          // Someone else's load failed (their sign-in, their timeout): their failure is not ours
          // to report, so this caller loads with its own access instead.
          return { ...(await load()), source: 'upstream' }
        }
      }
      // Assigned before the check below runs: that comes after load() settles, at least one tick later.
      let running!: Promise<LoadedToolList>
      running = (async () => {
        const list = await load()
        if (list.keepMs > 0 && !overtaken.has(running)) {
          const stored: StoredToolList = { tools: list.tools, ttlMs: list.ttlMs, cacheScope: list.cacheScope, freshUntil: deps.now() + list.freshMs }
          await deps.keyv.set(list.key, stored, list.keepMs)
        }
        return list
      })().finally(() => loading.delete(key))
      loading.set(key, running)
      return { ...(await running), source: 'upstream' }
    },
    async drop(key) {
      const inFlight = loading.get(key)
      if (inFlight) overtaken.add(inFlight)
      await deps.keyv.delete(key)
    },
    scopes: new Map(),
    definitions: new Map(),
  }
}

function withoutFreshness(stored: StoredToolList): ToolList {
  return { tools: stored.tools, ...(stored.ttlMs === undefined ? {} : { ttlMs: stored.ttlMs }), ...(stored.cacheScope === undefined ? {} : { cacheScope: stored.cacheScope }) }
}

/**
 * Bounds on a whole list, as on one response (DESIGN.md §6): without them a server that pages on
 * and on fills the relay's memory, the store and the answer, and the answer's serialization holds
 * the event loop. Counted over every page's answer (upstream-fetch.ts).
 */
export const MAX_LIST_BYTES = MAX_RESPONSE_BYTES
export const MAX_LIST_ITEMS = MAX_RESPONSE_SHAPE.maxItems

/**
 * `tools/list` followed through every page (MCP "Pagination") by the SDK, which leaves out tools
 * whose `x-mcp-header` declarations are invalid (SEP-2243) and keeps the first page's caching
 * hints. The SDK's own response cache is bypassed: the relay keeps lists per server or per user
 * itself, across replicas, and one SDK client may serve every user of a 2026-07-28 server.
 */
export async function listAllTools(client: Client, timeoutMs: number): Promise<ToolList> {
  const result = await withBudget({ bytes: MAX_LIST_BYTES, items: MAX_LIST_ITEMS }, () => client.listTools(undefined, { cacheMode: 'bypass', timeout: timeoutMs }))
  const { ttlMs, cacheScope } = result as { ttlMs?: unknown; cacheScope?: unknown }
  return {
    tools: result.tools,
    ...(typeof ttlMs === 'number' && Number.isSafeInteger(ttlMs) && ttlMs >= 0 ? { ttlMs } : {}),
    ...(cacheScope === 'public' || cacheScope === 'private' ? { cacheScope } : {}),
  }
}
