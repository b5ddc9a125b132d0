import type { ServerConfig } from '../config/load-config.ts'
import { DiscoveryError } from '../oauth/discovery.ts'
import { obtainServiceToken, ServiceAccountRefusedError, ServiceAccountUnavailableError } from '../oauth/client-credentials.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import { asSentence } from '../oauth/error-description.ts'
import { LockWaitTimeoutError } from '../store/lock.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import type { RelayDeps } from './deps.ts'
import { resolveServerAuth, selectScope } from './sign-in-link.ts'
import { isNearExpiry, type TokenFor, type TokenSource } from './token-source.ts'

/**
 * The one identity every tenant and user of a service-account server shares. Tenants and users
 * are `[A-Za-z0-9_.-]` names (config/api-keys.ts, the user_id check), so no caller is `*`.
 */
function serviceOwner(server: ServerConfig): TokenOwner {
  return { tenant: '*', userId: '*', serverId: server.serverId }
}

/** What a grant that obtains one token for a whole server brings to its token source. */
export interface ServerGrant {
  /** How the server's errors name the credential: `service account`, `workload identity`. */
  holder: string
  /**
   * A token obtained now. Throws what stopped it: the authorization server's refusal or absence
   * (ServiceAccountRefusedError, ServiceAccountUnavailableError), discovery trouble, a URL the
   * guard refused, the lock busy, an error `unavailable` names, or store trouble (a 503).
   */
  obtain(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, stale: UpstreamToken | undefined): Promise<UpstreamToken>
  /** This grant's own errors that make its credential unavailable (say, an unreadable assertion file). */
  unavailable?(error: unknown): boolean
  /** The server's error when it refuses (401) a token this grant has just obtained. */
  refusedFresh(server: ServerConfig): string
}

/**
 * The token source of a grant that needs no user (service accounts, workload identity): one
 * token for the server, shared by every tenant and user, kept sealed in the store, obtained anew
 * before expiry and once on a 401. Never a login link; a refused credential is the server's
 * error, with a message for the operator.
 */
export function serverTokenSource(grant: ServerGrant): TokenSource {
  return {
    auth: 'service_account',
    ownerOf: (_caller, server) => serviceOwner(server),

    async current(deps, server, owner) {
      const stored = await deps.oauth.serviceTokens.get(owner)
      if (stored && !isNearExpiry(stored, deps.now())) return { kind: 'token', token: stored, renewed: false }
      const fresh = await obtainOrExplain(grant, deps, server, owner, stored)
      // A stored token that is close to expiry, but not past it, still serves while the
      // authorization server is unavailable.
      if (fresh.kind === 'error' && stored?.expiresAt !== undefined && deps.now() < stored.expiresAt) {
        return { kind: 'token', token: stored, renewed: false }
      }
      return fresh
    },

    async renew(deps, server, owner, refused, refusedWasRenewed) {
      if (refusedWasRenewed) return { kind: 'error', code: 'UPSTREAM_ERROR', message: grant.refusedFresh(server) }
      return obtainOrExplain(grant, deps, server, owner, refused)
    },

    async missing(_deps, server) {
      return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} asked for a token its ${grant.holder} does not have.` }
    },

    async stepUp(_deps, server, _owner, _token, required) {
      return {
        kind: 'error',
        code: 'UPSTREAM_ERROR',
        message: `${server.serverId} refused its ${grant.holder} for lack of scope${required ? ` (${required})` : ''}; an administrator can set "scope" in the server entry.`,
      }
    },
  }
}

/**
 * A server's service account (`grant_type: client_credentials`, DESIGN.md §3): its token is
 * obtained with the client credentials grant (RFC 6749 §4.4).
 */
export const serviceAccount = serverTokenSource({
  holder: 'service account',
  obtain: (deps, server, owner, stale) =>
    obtainServiceToken(deps.oauth, owner, stale, async () => {
      const { auth, client } = await resolveServerAuth(deps, server)
      return { auth, client, scope: selectScope(server, auth, undefined), dpop: server.dpop }
    }),
  refusedFresh: (server) => `${server.serverId} refused its service account's new token (HTTP 401); ask an administrator to check the account's access.`,
})

/**
 * `grant`'s new token, or what the operator must fix (or what will pass) as the server's error;
 * store trouble is thrown on (a 503).
 */
async function obtainOrExplain(grant: ServerGrant, deps: RelayDeps, server: ServerConfig, owner: TokenOwner, stale: UpstreamToken | undefined): Promise<TokenFor> {
  try {
    return { kind: 'token', token: await grant.obtain(deps, server, owner, stale), renewed: true }
  } catch (error) {
    if (error instanceof ServiceAccountRefusedError || error instanceof ServiceAccountUnavailableError) {
      return { kind: 'error', code: 'UPSTREAM_ERROR', message: asSentence(error.message) }
    }
    if (error instanceof DiscoveryError || error instanceof UrlRefusedError || grant.unavailable?.(error)) {
      return { kind: 'error', code: 'UPSTREAM_ERROR', message: asSentence(`The ${grant.holder} of ${server.serverId} is unavailable: ${(error as Error).message}`) }
    }
    if (error instanceof LockWaitTimeoutError) {
      return { kind: 'error', code: 'UPSTREAM_ERROR', message: `The ${grant.holder} of ${server.serverId} is busy getting a token; try again shortly.` }
    }
    throw error
  }
}
