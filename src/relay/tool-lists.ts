import { MAX_CACHE_TTL_MS } from '@modelcontextprotocol/client'
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
export function toolListOf(
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
  return deps.toolCache.get(keyOf(scope, server, owner), loadAndPlace, { acceptStale: !options.fresh })
}

/** MCP "Tools / List Changed Notification": the list this owner reads is stale. */
export function dropToolList(deps: RelayDeps, server: ServerConfig, owner: TokenOwner): Promise<void> {
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
