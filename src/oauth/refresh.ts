import { setTimeout as delay } from 'node:timers/promises'
import * as oidc from 'openid-client'
import { isRelayError } from '../errors.ts'
import type { StoreLock } from '../store/lock.ts'
import { withLock } from '../store/lock.ts'
import type { TokenOwner, TokenStore, UpstreamToken } from '../store/tokens.ts'
import { tokenKey } from '../store/tokens.ts'
import { createClientConfiguration } from './client-config.ts'
import type { ServerAuth } from './discovery.ts'
import { dpopOptions } from './dpop.ts'
import { describeOAuthFailure } from './oauth-errors.ts'
import type { ClientRegistration } from './registration.ts'
import { toUpstreamToken } from './tokens-from-response.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

export interface RefreshDeps {
  readonly fetch: FetchLike
  readonly guard: UrlGuard
  readonly timeoutMs: number
  readonly tokens: TokenStore
  readonly lock: StoreLock
  readonly now: () => number
  readonly logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }
  /** Told each refresh's outcome once, however many callers share it (metrics); `transient` when it threw. */
  readonly onRefreshed?: (serverId: string, outcome: RefreshOutcome['kind'] | 'transient') => void
}

export type RefreshOutcome =
  | { kind: 'token'; token: UpstreamToken }
  /** `movedTo`: the server now names another authorization server, whose issuer this is. */
  | { kind: 'sign-in'; reason: string; oauthError?: string; movedTo?: string }

/** A refresh that failed for now (network, 5xx): the token is kept and the caller answers an error. */
export class TransientRefreshError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TransientRefreshError'
  }
}

// Refreshes running in this process, per token store: keyed by the store as well as the owner,
// so two relays in one process (tests, or two stores) never hand each other their tokens.
const inProcess = new WeakMap<TokenStore, Map<string, Promise<RefreshOutcome>>>()

/** The lease on the refresh lock; renewed every ttl/3 while the refresh runs (store/lock.ts). */
const LEASE_TTL_MS = 10_000

/**
 * Refreshes `stale`, the token this caller found unusable. Three outcomes, as Pomerium documents
 * for its refreshExpiredUpstreamMCPToken:
 * - `{ kind: 'token' }`: a fresh token — ours, or one another request or replica stored meanwhile;
 * - `{ kind: 'sign-in' }`: the grant is gone for good (`invalid_grant`, no refresh token, the
 *   token was removed); the stored token has been deleted;
 * - throws TransientRefreshError: try again later; the stored token is kept.
 *
 * Single-flight: one refresh per (tenant, user, server) in this process, and across replicas
 * through a lease lock in the shared store that is renewed while the request runs, so a rotated
 * refresh token is never sent twice (oidc-provider revokes the whole grant on reuse).
 */
export function refreshUpstreamToken(
  deps: RefreshDeps,
  owner: TokenOwner,
  stale: UpstreamToken,
  server: () => Promise<{ auth: ServerAuth; client: ClientRegistration }>,
): Promise<RefreshOutcome> {
  const key = tokenKey(owner)
  const running = inProcess.get(deps.tokens) ?? new Map<string, Promise<RefreshOutcome>>()
  inProcess.set(deps.tokens, running)
  const joined = running.get(key)
  if (joined) return joined
  const refreshing = withRefreshLock(deps, owner, (leaseLost) => refreshUnderLock(deps, owner, stale, server, leaseLost)).finally(() =>
    running.delete(key),
  )
  running.set(key, refreshing)
  refreshing.then((outcome) => deps.onRefreshed?.(owner.serverId, outcome.kind), () => deps.onRefreshed?.(owner.serverId, 'transient'))
  return refreshing
}

/**
 * Runs `fn` holding the owner's refresh lock, across replicas. Refreshes run under it; so must
 * anything else that writes or removes the owner's token (reset, a completed sign-in), or a
 * refresh in flight would store its result over what they did (a reset undone, a new sign-in lost).
 */
export function withRefreshLock<T>(
  deps: Pick<RefreshDeps, 'lock' | 'timeoutMs'>,
  owner: TokenOwner,
  fn: (leaseLost: AbortSignal) => Promise<T>,
): Promise<T> {
  return withLock(deps.lock, `refresh:${tokenKey(owner)}`, fn, {
    // The lease is renewed every ttl/3 while fn runs; it only lapses when this process dies
    // (another replica takes over after the ttl) or cannot reach the store to renew it, and then
    // a token request is aborted before another replica can take over.
    ttlMs: LEASE_TTL_MS,
    waitMs: deps.timeoutMs + LEASE_TTL_MS,
  })
}

async function refreshUnderLock(
  deps: RefreshDeps,
  owner: TokenOwner,
  stale: UpstreamToken,
  server: () => Promise<{ auth: ServerAuth; client: ClientRegistration }>,
  leaseLost: AbortSignal,
): Promise<RefreshOutcome> {
  // Waiters re-read the store after the lock instead of refreshing again.
  const current = await deps.tokens.get(owner)
  if (!current) return { kind: 'sign-in', reason: 'the token was removed' }
  if (current.accessToken !== stale.accessToken) return { kind: 'token', token: current }
  if (!current.refreshToken) {
    await deps.tokens.remove(owner)
    deps.logger.info({ ...audit('refresh.refused', owner), reason: 'no_refresh_token' }, 'token expired without refresh token, removed')
    return { kind: 'sign-in', reason: 'the token expired and the server gave no refresh token' }
  }

  const { auth, client } = await server()
  // MCP 2026-07-28 "Authorization Server Binding" (SEP-2352), DESIGN.md §6: a refresh token goes
  // to the authorization server that issued it, with the client it was issued to, or nowhere. A
  // server whose metadata now names another authorization server (or a client registered anew)
  // would otherwise collect every user's refresh token at its own token endpoint.
  if (auth.metadata.issuer !== current.issuer || client.clientId !== current.clientId) {
    await deps.tokens.remove(owner)
    const moved = auth.metadata.issuer !== current.issuer
    deps.logger.warn(
      { ...audit('refresh.refused', owner), reason: moved ? 'authorization_server_changed' : 'client_changed', issuer: auth.metadata.issuer },
      'refresh not sent: the token belongs to another authorization server or client, token removed',
    )
    return moved
      ? { kind: 'sign-in', reason: `the server now uses the authorization server ${auth.metadata.issuer}`, movedTo: auth.metadata.issuer }
      : { kind: 'sign-in', reason: 'the relay is registered anew at the authorization server' }
  }
  const config = createClientConfiguration(deps, auth, client)
  // DESIGN.md §5: the lease must not run out while the request is in flight. When it is lost, or
  // about to run out because renewals fail, the request is abandoned before another replica can
  // take the lock: a request the server has not read yet then never counts (its refresh token
  // stays unused, as the store still says); one it has read cannot be called back.
  const send = config[oidc.customFetch]!
  config[oidc.customFetch] = (url, options) =>
    send(url, { ...options, signal: options.signal ? AbortSignal.any([options.signal, leaseLost]) : leaseLost })
  // RFC 6749 §5.1: expires_in counts from when the server answered; counting from before the
  // request keeps the relay's idea of the expiry on the early side of the server's.
  const sentAt = deps.now()
  let response: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>
  try {
    // RFC 8707 §2: the resource goes on the refresh request too. RFC 9449 §5: a DPoP-bound
    // grant is refreshed with a proof of its own key.
    response = await oidc.refreshTokenGrant(config, current.refreshToken, { resource: current.resource }, await dpopOptions(config, current.dpopKey))
  } catch (error) {
    const failure = describeOAuthFailure(error, 'Token refresh failed')
    // RFC 6749 §5.2: an error answer (invalid_grant, invalid_client, …) will not change on retry;
    // network trouble, 5xx and 429 are transient and keep the token.
    if (!failure.transient && failure.oauthError !== undefined) {
      await deps.tokens.remove(owner)
      deps.logger.warn({ ...audit('refresh.refused', owner), reason: failure.oauthError }, 'refresh rejected, token removed')
      return { kind: 'sign-in', reason: failure.message, oauthError: failure.oauthError }
    }
    deps.logger.warn({ ...audit('refresh.failed', owner), reason: failure.message }, 'refresh failed, token kept')
    throw new TransientRefreshError(failure.message, { cause: error })
  }
  const token = toUpstreamToken(response, {
    issuer: current.issuer,
    clientId: current.clientId,
    resource: current.resource,
    requestedScope: current.scope,
    previous: current,
    now: sentAt,
    dpopKey: current.dpopKey,
  })
  await storeRefreshed(deps, owner, token, leaseLost)
  deps.logger.info(audit('refresh.ok', owner), 'token refreshed')
  return { kind: 'token', token }
}

/** An audit line's fields (DESIGN.md §6): the event and whose token, never the token. */
function audit(event: 'refresh.ok' | 'refresh.refused' | 'refresh.failed', owner: TokenOwner) {
  return { event, tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId }
}

/** The pause between tries to store a refreshed token while the store does not answer. */
const STORE_RETRY_MS = 250

/**
 * Stores a refreshed token. The server may have rotated the refresh token, and this process holds
 * the only copy of the new one: a store that fails for a moment is tried again while the lease
 * holds, rather than the new token lost (the next refresh would send the used one, and with reuse
 * detection the user would be signed out). Throws STORE_UNAVAILABLE once the lease runs out.
 */
async function storeRefreshed(deps: RefreshDeps, owner: TokenOwner, token: UpstreamToken, leaseLost: AbortSignal): Promise<void> {
  for (let tries = 1; ; tries++) {
    try {
      await deps.tokens.put(owner, token)
      return
    } catch (error) {
      if (!isRelayError(error, 'STORE_UNAVAILABLE') || leaseLost.aborted) throw error
      if (tries === 1) deps.logger.warn({ serverId: owner.serverId, tenant: owner.tenant }, 'refreshed token not stored yet, retrying')
      // Rejects when the lease runs out mid-pause; the loop then makes its last try.
      await delay(STORE_RETRY_MS, undefined, { signal: leaseLost }).catch(() => undefined)
    }
  }
}
