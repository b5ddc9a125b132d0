import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import type { Tool } from '@modelcontextprotocol/sdk/types.js'
import type { Keyv } from 'keyv'

export interface ToolListCache {
  /**
   * The cached list for `key`, or the one `load` fetches: one upstream `tools/list` however many
   * requests wait for the same key in this process.
   */
  get(key: string, load: () => Promise<Tool[]>): Promise<{ tools: Tool[]; source: 'cache' | 'upstream' }>
  drop(key: string): Promise<void>
}

/** Per-server (or per-server-and-user) tools/list results, TOOL_LIST_CACHE_TTL_SECONDS; 0 disables. */
export function createToolListCache(deps: { keyv: Keyv; ttlMs: number }): ToolListCache {
  const loading = new Map<string, Promise<Tool[]>>()
  // Loads that a drop() overtook: a load that started before a drop does not write its stale list
  // back. Only a load in flight can be overtaken, so only those are remembered (weakly): a map of
  // every key ever dropped grew by one entry per sign-in and reset for as long as the process ran.
  const overtaken = new WeakSet<Promise<Tool[]>>()

  return {
    async get(key, load) {
      // A load in flight is joined before the store is read, and again after: read first, a
      // request whose store read straddles the end of a load (the list written, the load gone
      // from `loading`) would start a second tools/list.
      let joined = loading.get(key)
      if (!joined && deps.ttlMs > 0) {
        const cached = (await deps.keyv.get(key)) as Tool[] | undefined
        if (cached) return { tools: cached, source: 'cache' }
        joined = loading.get(key)
      }
      if (joined) {
        try {
          return { tools: await joined, source: 'upstream' }
        } catch {
          // Someone else's load failed (their sign-in, their timeout): their failure is not ours
          // to report, so this caller loads with its own access instead.
          return { tools: await load(), source: 'upstream' }
        }
      }
      // Assigned before the check below runs: that comes after load() settles, at least one tick later.
      let running!: Promise<Tool[]>
      running = (async () => {
        const tools = await load()
        if (deps.ttlMs > 0 && !overtaken.has(running)) await deps.keyv.set(key, tools, deps.ttlMs)
        return tools
      })().finally(() => loading.delete(key))
      loading.set(key, running)
      return { tools: await running, source: 'upstream' }
    },
    async drop(key) {
      const inFlight = loading.get(key)
      if (inFlight) overtaken.add(inFlight)
      await deps.keyv.delete(key)
    },
  }
}

const MAX_PAGES = 100
/**
 * A bound on a whole list, as on one response (DESIGN.md §6): without it a server that pages on
 * and on fills the relay's memory, the store and the answer (100 pages of 16 MiB each).
 */
const MAX_LIST_CHARACTERS = 16 * 1024 * 1024

/**
 * `tools/list` followed through every page (MCP "Pagination"), with caps against endless cursors
 * and endless lists: past either, the tools read so far are the list.
 */
export async function listAllTools(client: Client, timeoutMs: number): Promise<Tool[]> {
  const tools: Tool[] = []
  let characters = 0
  let cursor: string | undefined
  for (let page = 0; page < MAX_PAGES; page++) {
    const result = await client.listTools(cursor === undefined ? {} : { cursor }, { timeout: timeoutMs })
    characters += JSON.stringify(result.tools).length
    if (characters > MAX_LIST_CHARACTERS) return tools
    tools.push(...result.tools)
    cursor = result.nextCursor
    if (!cursor) return tools
  }
  return tools
}
