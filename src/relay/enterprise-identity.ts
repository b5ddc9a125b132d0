import type { ServerConfig } from '../config/load-config.ts'
import { RelayError } from '../errors.ts'
import { DiscoveryError } from '../oauth/discovery.ts'
import { identityProviderOf, type IdentityProvider } from '../oauth/identity-provider.ts'
import { refreshProviderIdentity, revokeProviderIdentity } from '../oauth/identity-sign-in.ts'
import { describeOAuthFailure } from '../oauth/oauth-errors.ts'
import type { Revoked } from '../oauth/revocation.ts'
import { withRefreshLock } from '../oauth/refresh.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import type { IdentityOwner, ProviderIdentity } from '../store/identities.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { auditOf, ownerOf, poolKey, type RelayDeps } from './deps.ts'
import { dropUserToolList } from './tool-lists.ts'
import type { NoToken } from './token-source.ts'
import type { Caller } from './types.ts'

/**
 * The user's identity at the enterprise identity provider (DESIGN.md §3): one per (tenant, user),
 * shared by every `grant_type: "enterprise"` server. It comes from a sign-in at the provider
 * through the relay's login link (provider-sign-in.ts) or from POST /oauth/identity, and is
 * renewed with its refresh token.
 */

/**
 * The server id under which the provider's sign-in goes through tickets, flows, pending
 * confirmations, locks and audit lines. No configured server can have it (server ids start with
 * a letter or digit, config/servers.ts).
 */
export const IDENTITY_PROVIDER_ID = '@identity_provider'

export function providerOwner(caller: IdentityOwner): TokenOwner {
  return { tenant: caller.tenant, userId: caller.userId, serverId: IDENTITY_PROVIDER_ID }
}

/** An ID token is renewed a minute before it expires: the exchanges made with it must still find it valid. */
const RENEW_BEFORE_MS = 60_000

export type IdentityFor = { kind: 'identity'; identity: ProviderIdentity } | NoToken

/**
 * The caller's identity, renewed when it is about to expire. Outcomes:
 * - `identity`: a valid one;
 * - `need-auth`: none, or it ran out for good: the provider's login link (or, with
 *   SIGN_IN_CONFIRMATION=code, the sign-in waiting for its code);
 * - `error`: the provider is unavailable (the identity is kept), or it offers no sign-in page.
 * Store trouble throws (503).
 */
export async function currentIdentity(deps: RelayDeps, caller: Caller, server: ServerConfig): Promise<IdentityFor> {
  const config = deps.config.identityProvider!
  const found = await deps.identities.get(caller)
  // An identity belongs to the provider and client that issued it: after the operator points the
  // relay at another provider (or client), its ID token and refresh token are never sent there.
  const stored = found?.issuer === config.issuer && found.clientId === config.clientId ? found : undefined
  if (stored && deps.now() < stored.expiresAt - RENEW_BEFORE_MS) return { kind: 'identity', identity: stored }
  if (stored?.refreshToken) {
    const renewed = await renewIdentity(deps, caller, stored)
    if (renewed.kind === 'identity') return renewed
    if (renewed.kind === 'error') return deps.now() < stored.expiresAt ? { kind: 'identity', identity: stored } : renewed
  } else if (stored && deps.now() < stored.expiresAt) {
    return { kind: 'identity', identity: stored }
  }
  return providerSignIn(deps, caller, server)
}

/** Renewals running in this process, per identity store: concurrent callers share one. */
const renewing = new WeakMap<object, Map<string, Promise<IdentityFor | { kind: 'gone' }>>>()

/**
 * Renews `stale` with its refresh token: single-flight in this process and, under the same lease
 * lock as a server's refresh, across replicas (a rotated refresh token must never be sent twice).
 */
function renewIdentity(deps: RelayDeps, caller: Caller, stale: ProviderIdentity): Promise<IdentityFor | { kind: 'gone' }> {
  const running = renewing.get(deps.identities) ?? new Map<string, Promise<IdentityFor | { kind: 'gone' }>>()
  renewing.set(deps.identities, running)
  const key = `${caller.tenant}\n${caller.userId}`
  const joined = running.get(key)
  if (joined) return joined
  const owner = providerOwner(caller)
  const renewal = withRefreshLock(deps.oauth, owner, async (leaseLost): Promise<IdentityFor | { kind: 'gone' }> => {
    const current = await deps.identities.get(caller)
    if (!current) return { kind: 'gone' }
    if (current.idToken !== stale.idToken) return { kind: 'identity', identity: current }
    const provider = await identityProviderOf(deps.oauth, deps.config.identityProvider!)
    const outcome = await refreshProviderIdentity(deps.oauth, provider, current as ProviderIdentity & { refreshToken: string }, leaseLost)
    if (outcome.kind === 'gone') {
      await deps.identities.remove(caller)
      deps.logger.warn({ event: 'refresh.refused', ...auditOf(owner), reason: outcome.oauthError ?? 'no_id_token' }, 'identity renewal refused, identity removed')
      return { kind: 'gone' }
    }
    await deps.identities.put(caller, outcome.identity)
    deps.logger.info({ event: 'refresh.ok', ...auditOf(owner) }, 'identity renewed')
    return outcome
  })
    .catch((error: unknown): IdentityFor => {
      // The provider unreachable or failing (openid-client's errors, DiscoveryError, a refused
      // URL), or the lock held too long by another replica: transient. Store trouble throws.
      if (!(error instanceof RelayError)) {
        const failure = describeOAuthFailure(error, 'The sign-in at the identity provider could not be renewed')
        deps.logger.warn({ event: 'refresh.failed', ...auditOf(owner), reason: failure.message }, 'identity renewal failed, identity kept')
        return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${failure.message}. Try again shortly.` }
      }
      throw error
    })
    .finally(() => running.delete(key))
  running.set(key, renewal)
  return renewal
}

/**
 * The answer for a user without a usable identity: the provider's login link (one link, reused
 * while it lives, covers every enterprise server), or the sign-in waiting for its code. A
 * provider without an authorization endpoint has no sign-in page: the identity must come from
 * POST /oauth/identity, and the server's error says so.
 */
export async function providerSignIn(deps: RelayDeps, caller: Caller, server: ServerConfig): Promise<NoToken> {
  const owner = providerOwner(caller)
  if (deps.config.signInConfirmation === 'code' && (await deps.pendingIdentities.get(owner))) {
    return { kind: 'need-auth', pendingConfirmation: true, message: pendingIdentityMessage(deps, server) }
  }
  let provider: IdentityProvider
  try {
    provider = await identityProviderOf(deps.oauth, deps.config.identityProvider!)
  } catch (error) {
    if (error instanceof DiscoveryError || error instanceof UrlRefusedError) {
      return { kind: 'error', code: 'UPSTREAM_ERROR', message: `Sign-in to ${server.serverId} is unavailable: ${error.message}` }
    }
    throw error
  }
  if (!provider.metadata.authorization_endpoint) {
    return {
      kind: 'error',
      code: 'UPSTREAM_ERROR',
      message: `${server.serverId} needs the user's identity at ${provider.config.issuer}, which offers no sign-in page: the application must send the user's ID token to POST /oauth/identity.`,
    }
  }
  const ticket = await issueProviderTicket(deps, owner, provider.config.scope)
  return {
    kind: 'need-auth',
    loginUrl: `${deps.config.publicBaseUrl}/oauth/start/${ticket}`,
    message: `Sign-in with the organization's account (${providerName(deps)}) is needed for ${server.description || server.serverId}; the same sign-in serves ${enterpriseServers(deps).length > 1 ? 'every server that uses it' : 'it from now on'}. Open the login_url, sign in, then try again.`,
  }
}

// Tickets being issued in this process, per ticket store: the servers of one auth-status request
// ask for the provider's link at the same moment, and get the same one.
const issuing = new WeakMap<object, Map<string, Promise<string>>>()

function issueProviderTicket(deps: RelayDeps, owner: TokenOwner, scope: string): Promise<string> {
  const running = issuing.get(deps.tickets) ?? new Map<string, Promise<string>>()
  issuing.set(deps.tickets, running)
  const key = `${owner.tenant}\n${owner.userId}`
  const joined = running.get(key)
  if (joined) return joined
  const ticket = deps.tickets.issue({ ...owner, scope }).finally(() => running.delete(key))
  running.set(key, ticket)
  return ticket
}

export function pendingIdentityMessage(deps: RelayDeps, server: ServerConfig): string {
  return `The sign-in with the organization's account (${providerName(deps)}) is waiting for confirmation. Ask the user for the confirmation code the sign-in page showed them (ten letters and digits, like XXXXX-XXXXX), then call mcp_auth_status with confirm_code set to it and server_id "${server.serverId}". Do not ask them to sign in again.`
}

/** The provider as the pages name it: its host. */
export function providerName(deps: RelayDeps): string {
  return new URL(deps.config.identityProvider!.issuer).host
}

export function enterpriseServers(deps: RelayDeps): ServerConfig[] {
  return [...deps.config.servers.values()].filter((server) => server.grantType === 'enterprise')
}

/**
 * Stores a new identity for the caller (a completed or confirmed sign-in, or POST /oauth/identity),
 * under the lock its renewals take. An identity of another subject (another account) makes the
 * user's enterprise tokens, obtained for the previous one, go, and the previous refresh token is
 * revoked at the provider; the same subject keeps them, and keeps a refresh token the new
 * identity does not bring.
 */
export async function storeIdentity(deps: RelayDeps, caller: Caller, identity: ProviderIdentity): Promise<void> {
  const owner = providerOwner(caller)
  const previous = await withRefreshLock(deps.oauth, owner, async () => {
    const before = await deps.identities.get(caller)
    const sameSubject = before?.subject === identity.subject && before.issuer === identity.issuer
    await deps.identities.put(caller, sameSubject && !identity.refreshToken ? { ...identity, refreshToken: before.refreshToken } : identity)
    return sameSubject ? undefined : before
  })
  deps.logger.info({ event: 'identity.stored', ...auditOf(owner), replaced: previous !== undefined }, 'identity stored')
  if (!previous) return
  // After the identity's lock is released: a server's token is obtained under its own lock, which
  // then takes the identity's (the one order both are ever taken in).
  for (const server of enterpriseServers(deps)) await dropEnterpriseToken(deps, ownerOf(caller, server), server)
  if (previous.refreshToken) void revokeIdentity(deps, owner, previous)
}

/**
 * POST /oauth/reset without server_id (and /admin/reset): the caller's identity at the provider
 * goes, with a sign-in waiting for its code, and its refresh token is revoked at the provider
 * (RFC 7009), bounded in time. Undefined when there was none.
 */
export async function resetIdentity(deps: RelayDeps, caller: Caller): Promise<Revoked | undefined> {
  if (!deps.config.identityProvider) return undefined
  const owner = providerOwner(caller)
  await deps.pendingIdentities.remove(owner)
  const removed = await withRefreshLock(deps.oauth, owner, async () => {
    const identity = await deps.identities.get(caller)
    return (await deps.identities.remove(caller)) ? { identity } : undefined
  })
  deps.logger.info({ event: 'reset', ...auditOf(owner), deleted: removed !== undefined }, 'identity reset')
  if (!removed) return undefined
  return revokeIdentity(deps, owner, removed.identity)
}

/** RFC 7009 at the provider, for an identity the relay let go of: reported, never thrown. */
async function revokeIdentity(deps: RelayDeps, owner: TokenOwner, identity: ProviderIdentity | undefined): Promise<Revoked> {
  let revoked: Revoked
  let reason: string | undefined
  try {
    const provider = await identityProviderOf(deps.oauth, deps.config.identityProvider!)
    if (!identity?.refreshToken) {
      // An ID token alone (POST /oauth/identity) is no grant of the relay's: nothing to revoke.
      revoked = 'unsupported'
      reason = identity ? 'no refresh token' : 'the stored identity could not be opened'
    } else if (!provider.metadata.revocation_endpoint) {
      revoked = 'unsupported'
    } else if (provider.config.issuer !== identity.issuer || provider.client.clientId !== identity.clientId) {
      // RFC 7009 §2.1: only the client that obtained it may revoke it, and only at its issuer.
      revoked = false
      reason = 'the identity provider configuration changed since the sign-in'
    } else {
      await revokeProviderIdentity(deps.oauth, provider, identity.refreshToken, deps.config.upstreamTimeoutMs)
      revoked = true
    }
  } catch (error) {
    revoked = false
    reason = describeOAuthFailure(error, 'Revocation at the identity provider failed').message
  }
  deps.logger.info({ event: 'revocation', ...auditOf(owner), revoked, reason }, 'grant revocation')
  return revoked
}

/** Removes one enterprise server's token for its owner, and what depended on it. */
async function dropEnterpriseToken(deps: RelayDeps, owner: TokenOwner, server: ServerConfig): Promise<void> {
  await withRefreshLock(deps.oauth, owner, () => deps.tokens.remove(owner))
  await deps.pool.drop(poolKey(owner))
  await dropUserToolList(deps, server, owner)
}

/** POST /oauth/identity: what the relay checks of an ID token an application hands it (DESIGN.md §4). */
export async function submitIdentity(deps: RelayDeps, caller: Caller, idToken: string): Promise<{ ok: true; expires_at: string }> {
  const config = deps.config.identityProvider
  if (!config) throw new RelayError('NOT_FOUND', 'no identity_provider is configured, so the relay takes no identities')
  const claims = readIdTokenClaims(idToken)
  // OpenID Connect Core §3.1.3.7 steps 2-3 and 9: the issuer compared as a string, the relay's
  // client among the audiences, not expired. The signature is the provider's to check when the
  // relay exchanges the token (it has no reason to sign its own token over to someone else).
  if (claims.iss !== config.issuer) throw new RelayError('INVALID_INPUT', `id_token: its issuer (iss) is not the configured identity provider ${config.issuer}`)
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud]
  if (!audiences.includes(config.clientId)) throw new RelayError('INVALID_INPUT', `id_token: it was not issued to the relay's client ${config.clientId} (aud)`)
  if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw new RelayError('INVALID_INPUT', 'id_token: it has no expiry (exp)')
  if (claims.exp * 1000 <= deps.now()) throw new RelayError('INVALID_INPUT', 'id_token: it has expired (exp)')
  if (typeof claims.sub !== 'string' || claims.sub === '') throw new RelayError('INVALID_INPUT', 'id_token: it names no subject (sub)')
  await storeIdentity(deps, caller, {
    idToken,
    refreshToken: undefined,
    expiresAt: claims.exp * 1000,
    subject: claims.sub,
    issuer: config.issuer,
    clientId: config.clientId,
    obtainedAt: deps.now(),
  })
  return { ok: true, expires_at: new Date(claims.exp * 1000).toISOString() }
}

const MAX_ID_TOKEN_LENGTH = 16 * 1024

/** The claims of a compact JWS (RFC 7515 §7.1), read without verifying; INVALID_INPUT naming id_token otherwise. */
function readIdTokenClaims(idToken: string): { iss?: unknown; aud?: unknown; exp?: unknown; sub?: unknown } {
  const notJwt = new RelayError('INVALID_INPUT', 'id_token: must be a signed JWT (three base64url parts separated by dots)')
  if (idToken.length > MAX_ID_TOKEN_LENGTH) throw new RelayError('INVALID_INPUT', `id_token: must be at most ${MAX_ID_TOKEN_LENGTH} characters`)
  const parts = idToken.split('.')
  if (parts.length !== 3 || !parts.every((part) => /^[A-Za-z0-9_-]+$/.test(part))) throw notJwt
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as { alg?: unknown }
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown
    // RFC 7518 §3.6: an unsigned token is no ID token.
    if (typeof header.alg !== 'string' || header.alg === 'none' || typeof claims !== 'object' || claims === null || Array.isArray(claims)) throw notJwt
    return claims as { iss?: unknown; aud?: unknown; exp?: unknown; sub?: unknown }
  } catch {
    throw notJwt
  }
}
