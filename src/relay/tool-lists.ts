import { MAX_CACHE_TTL_MS, type Tool } from '@modelcontextprotocol/client'
import type { ServerConfig } from '../config/load-config.ts'
import type { ToolList } from '../mcp/tool-cache.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { tokenKey } from '../store/tokens.ts'
import type { RelayDeps } from './deps.ts'

type Scope = 'public' | 'private'

/**
 * One server's tool list for `owner`, from the cache or from `load`. Where it is kept and for how
 * long: the server's own hints first (SEP-2549, DESIGN.md §3: `cacheScope` `public` is one list for
 * everyone, `private` one per user; `ttlMs`, at most 24 h as the SDK bounds it, how long the list
 * is the server's current one), else the configuration (`tool_cache`, TOOL_LIST_CACHE_TTL_SECONDS).
 * A list is kept for the longer of its freshness and the configured TTL: what mcp_tool_list shows
 * is fresh (`fresh`), while a call reads a tool's definition (its `x-mcp-header` declarations, its
 * output schema) from the last list known, as the SDK does. The scope a server's last list came
 * with is remembered in this process, so that the next read goes to the right key at once.
 */
export async function toolListOf(
  deps: RelayDeps,
  server: ServerConfig,
  owner: TokenOwner,
  load: () => Promise<ToolList>,
  options: { fresh: boolean },
): Promise<ToolList & { source: 'cache' | 'upstream' }> {
  const configured = configuredScope(server)
  const scope = deps.toolCache.scopes.get(server.serverId) ?? configured
  const loadAndPlace = async () => {
    const list = await load()
    const listScope = list.cacheScope ?? configured
    deps.toolCache.scopes.set(server.serverId, listScope)
    const configuredMs = deps.config.toolListCacheTtlMs
    const freshMs = list.ttlMs === undefined ? configuredMs : Math.min(list.ttlMs, MAX_CACHE_TTL_MS)
    return { ...list, key: keyOf(listScope, server, owner), freshMs, keepMs: Math.max(freshMs, configuredMs) }
  }
  const list = await deps.toolCache.get(keyOf(scope, server, owner), loadAndPlace, { acceptStale: !options.fresh })
  if (list.source === 'upstream' || !deps.toolCache.definitions.has(server.serverId)) {
    deps.toolCache.definitions.set(server.serverId, new Map(list.tools.map((tool) => [tool.name, tool])))
  }
  return list
}

/**
 * What a call needs to know of a tool (its `x-mcp-header` declarations, its output schema, its
 * task support): from the newest list of the server this process has read, whoever it was read
 * for, else from the caller's own list (cached, or fetched with `load`). A server's definition of
 * a tool does not depend on who lists it, while whether the tool is listed may: so a new user's
 * first call is one upstream request, not a tools/list before it (DESIGN.md §5), even where each
 * user's list is private. `fresh` (the server said the definition used was out of date, -32020)
 * reads the caller's list anew.
 */
export async function toolDefinitionOf(
  deps: RelayDeps,
  server: ServerConfig,
  owner: TokenOwner,
  toolName: string,
  load: () => Promise<ToolList>,
  options: { fresh: boolean },
): Promise<Tool | undefined> {
  const known = options.fresh ? undefined : deps.toolCache.definitions.get(server.serverId)?.get(toolName)
  if (known) return known
  return (await toolListOf(deps, server, owner, load, options)).tools.find((tool) => tool.name === toolName)
}

/** MCP "Tools / List Changed Notification": the list this owner reads is stale. */
export function dropToolList(deps: RelayDeps, server: ServerConfig, owner: TokenOwner): Promise<void> {
  deps.toolCache.definitions.delete(server.serverId)
  const scope = deps.toolCache.scopes.get(server.serverId) ?? configuredScope(server)
  return deps.toolCache.drop(keyOf(scope, server, owner))
}

/** A new token or none (a sign-in, a reset): the owner's own list, if the server keeps one per user, depended on the old one. */
export function dropUserToolList(deps: RelayDeps, server: ServerConfig, owner: TokenOwner): Promise<void> {
  return deps.toolCache.drop(keyOf('private', server, owner))
}

function configuredScope(server: ServerConfig): Scope {
  return server.toolCache === 'user' ? 'private' : 'public'
}

function keyOf(scope: Scope, server: ServerConfig, owner: TokenOwner): string {
  return scope === 'private' ? `user:${tokenKey(owner)}` : `server:${server.serverId}`
}
