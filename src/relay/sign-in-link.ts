import type { ServerConfig } from '../config/load-config.ts'
import { discoverServerAuth, DiscoveryError, type Challenge, type ServerAuth } from '../oauth/discovery.ts'
import { ensureClientRegistration, type ClientRegistration } from '../oauth/registration.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { redirectUriFor } from '../oauth/redirect-uri.ts'
import type { RelayDeps } from './deps.ts'

export type LinkOutcome = { kind: 'link'; loginUrl: string } | { kind: 'error'; message: string }

/**
 * How to sign in to `server`: the cached discovery, or a new one (with the 401 challenge when
 * there is one), and the client registration. Throws DiscoveryError for what the operator or
 * the server must fix.
 */
export async function resolveServerAuth(
  deps: RelayDeps,
  server: ServerConfig,
  challenge?: Challenge,
): Promise<{ auth: ServerAuth; client: ClientRegistration }> {
  const auth = await discoverServer(deps, server, challenge)
  const client = await ensureClientRegistration(deps.oauth.registration, server, auth, redirectUriFor(deps.config.callbackUrl, server, auth))
  return { auth, client }
}

/** The cached discovery, or a new one (with the 401 challenge when there is one). Throws DiscoveryError. */
export async function discoverServer(deps: RelayDeps, server: ServerConfig, challenge?: Challenge): Promise<ServerAuth> {
  const cached = await deps.discovery.get(server)
  if (cached?.kind === 'oauth' && !challenge?.resourceMetadataUrl) return cached.auth
  const auth = await discoverServerAuth(deps.oauth, server, challenge ?? {})
  await deps.discovery.set(server, { kind: 'oauth', auth })
  deps.logger.info({ serverId: server.serverId, issuer: auth.metadata.issuer, legacy: auth.legacy }, 'authorization server discovered')
  return auth
}

/**
 * MCP 2026-07-28 Authorization, "Scope Selection Strategy": the operator's configured scope; else
 * the challenge's `scope`; else the protected-resource metadata's `scopes_supported`; else none.
 */
export function selectScope(server: ServerConfig, auth: ServerAuth, challengeScope: string | undefined): string | undefined {
  return server.oauth.scope ?? challengeScope ?? auth.challengeScope ?? auth.scopesSupported?.join(' ') ?? undefined
}

/**
 * A user's sign-in asks for `offline_access` exactly when the authorization server lists it in its
 * own `scopes_supported` (SEP-2207, "Refresh Tokens": the relay wants refresh tokens, and asking a
 * server for a scope it does not offer is an error). A scope the operator configured is sent as written.
 */
function withOfflineAccess(server: ServerConfig, auth: ServerAuth, scope: string | undefined): string | undefined {
  if (server.oauth.scope !== undefined) return scope
  const scopes = new Set(scope?.split(/\s+/).filter(Boolean))
  if (auth.metadata.scopes_supported?.includes(OFFLINE_ACCESS) === true) scopes.add(OFFLINE_ACCESS)
  else scopes.delete(OFFLINE_ACCESS)
  return scopes.size === 0 ? undefined : [...scopes].join(' ')
}

const OFFLINE_ACCESS = 'offline_access'

/**
 * DESIGN.md §5, sign-in step 1: make sure discovery and registration are done (their errors
 * become this server's error, not a broken link), then the owner's live ticket or a new one.
 */
export async function createLoginLink(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  request: { challenge?: Challenge; scope?: string },
): Promise<LinkOutcome> {
  try {
    const { auth } = await resolveServerAuth(deps, server, request.challenge)
    const scope = withOfflineAccess(server, auth, request.scope ?? selectScope(server, auth, request.challenge?.scope))
    const ticket = await deps.tickets.issue({ ...owner, scope })
    return { kind: 'link', loginUrl: `${deps.config.publicBaseUrl}/oauth/start/${ticket}` }
  } catch (error) {
    return { kind: 'error', message: unavailable(deps, server, error) }
  }
}

/**
 * Reads the server's metadata again (a 401 named it) and keeps what it says for every later
 * request; an error to answer when it cannot be read or is refused, else undefined.
 */
export async function rediscover(deps: RelayDeps, server: ServerConfig, challenge: Challenge): Promise<{ kind: 'error'; code: 'UPSTREAM_ERROR'; message: string } | undefined> {
  try {
    await resolveServerAuth(deps, server, challenge)
    return undefined
  } catch (error) {
    return { kind: 'error', code: 'UPSTREAM_ERROR', message: unavailable(deps, server, error) }
  }
}

/** What the operator or the server must fix, as the server's error; anything else (store trouble) is thrown on. */
function unavailable(deps: RelayDeps, server: ServerConfig, error: unknown): string {
  if (!(error instanceof DiscoveryError || error instanceof UrlRefusedError)) throw error
  deps.logger.warn({ serverId: server.serverId, reason: error.message }, 'sign-in unavailable')
  return `Sign-in to ${server.serverId} is unavailable: ${error.message}`
}

export function mergeScopes(...scopes: Array<string | undefined>): string | undefined {
  const all = new Set(scopes.flatMap((scope) => scope?.split(/\s+/).filter(Boolean) ?? []))
  return all.size === 0 ? undefined : [...all].join(' ')
}
