import type { ServerConfig } from '../config/load-config.ts'
import { discoverServerAuth, DiscoveryError, type Challenge, type ServerAuth } from '../oauth/discovery.ts'
import { ensureClientRegistration, type ClientRegistration } from '../oauth/registration.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { redirectUriFor, type RelayDeps } from './deps.ts'

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
  const client = await ensureClientRegistration(deps.oauth.registration, server, auth, redirectUriFor(deps, server))
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
 * MCP 2025-11-25 Authorization, "Scope Selection Strategy": the operator's configured scope; else
 * the challenge's `scope`; else the protected-resource metadata's `scopes_supported`; else none.
 */
export function selectScope(server: ServerConfig, auth: ServerAuth, challengeScope: string | undefined): string | undefined {
  return server.oauth.scope ?? challengeScope ?? auth.challengeScope ?? auth.scopesSupported?.join(' ') ?? undefined
}

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
    const scope = request.scope ?? selectScope(server, auth, request.challenge?.scope)
    const ticket = await deps.tickets.issue({ ...owner, scope })
    return { kind: 'link', loginUrl: `${deps.config.publicBaseUrl}/oauth/start/${ticket}` }
  } catch (error) {
    if (error instanceof DiscoveryError || error instanceof UrlRefusedError) {
      deps.logger.warn({ serverId: server.serverId, reason: error.message }, 'sign-in unavailable')
      return { kind: 'error', message: `Sign-in to ${server.serverId} is unavailable: ${error.message}` }
    }
    throw error
  }
}

export function mergeScopes(...scopes: Array<string | undefined>): string | undefined {
  const all = new Set(scopes.flatMap((scope) => scope?.split(/\s+/).filter(Boolean) ?? []))
  return all.size === 0 ? undefined : [...all].join(' ')
}
