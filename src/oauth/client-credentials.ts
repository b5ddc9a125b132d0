import * as oidc from 'openid-client'
import type { DpopMode } from '../config/load-config.ts'
import type { StoreLock } from '../store/lock.ts'
import type { TokenOwner, TokenStore, UpstreamToken } from '../store/tokens.ts'
import { createClientConfiguration } from './client-config.ts'
import type { ServerAuth } from './discovery.ts'
import { dpopOptions, newGrantKey } from './dpop.ts'
import { describeOAuthFailure } from './oauth-errors.ts'
import type { ClientRegistration } from './registration.ts'
import { withRefreshLock } from './refresh.ts'
import { toUpstreamToken } from './tokens-from-response.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

export interface ServiceTokenDeps {
  readonly fetch: FetchLike
  readonly guard: UrlGuard
  readonly timeoutMs: number
  /** Service-account tokens, one per server (sealed like user tokens; not listed with the users' connections). */
  readonly serviceTokens: ServiceTokenStore
  readonly lock: StoreLock
  readonly now: () => number
  readonly logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }
}

/** The authorization server refused the service account's credentials (or the grant): an operator must fix the entry. */
export class ServiceAccountRefusedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ServiceAccountRefusedError'
  }
}

/** The token request failed for now (network, 5xx, 429): the next call tries again. */
export class ServiceAccountUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ServiceAccountUnavailableError'
  }
}

export type ServiceTokenStore = Pick<TokenStore, 'get' | 'put'>

// Token requests running in this process, per store: concurrent callers share one.
const inProcess = new WeakMap<ServiceTokenStore, Map<string, Promise<UpstreamToken>>>()

/**
 * A new service-account token for `owner` (the server's one service identity), to replace
 * `stale` (the token the caller found unusable, or none). Outcomes:
 * - a token: a new one, or one another request or replica stored meanwhile;
 * - throws ServiceAccountRefusedError: the credentials were refused (`invalid_client`, …);
 * - throws ServiceAccountUnavailableError: the authorization server failed for now.
 *
 * RFC 6749 §4.4 client credentials grant, with RFC 8707 `resource` and the configured scope.
 * Single-flight in this process and across replicas, under the same lease lock as a refresh,
 * so a fleet of replicas asks for one token, not one each.
 */
export function obtainServiceToken(
  deps: ServiceTokenDeps,
  owner: TokenOwner,
  stale: UpstreamToken | undefined,
  server: () => Promise<{ auth: ServerAuth; client: ClientRegistration; scope: string | undefined; dpop: DpopMode }>,
): Promise<UpstreamToken> {
  const key = owner.serverId
  const running = inProcess.get(deps.serviceTokens) ?? new Map<string, Promise<UpstreamToken>>()
  inProcess.set(deps.serviceTokens, running)
  const joined = running.get(key)
  if (joined) return joined
  const obtaining = withRefreshLock(deps, owner, async (leaseLost) => {
    // Waiters re-read the store after the lock instead of asking again.
    const current = await deps.serviceTokens.get(owner)
    if (current && current.accessToken !== stale?.accessToken) return current
    const token = await requestToken(deps, owner, await server(), leaseLost)
    await deps.serviceTokens.put(owner, token)
    return token
  }).finally(() => running.delete(key))
  running.set(key, obtaining)
  return obtaining
}

async function requestToken(
  deps: ServiceTokenDeps,
  owner: TokenOwner,
  { auth, client, scope, dpop }: { auth: ServerAuth; client: ClientRegistration; scope: string | undefined; dpop: DpopMode },
  leaseLost: AbortSignal,
): Promise<UpstreamToken> {
  const config = createClientConfiguration(deps, auth, client)
  const send = config[oidc.customFetch]!
  config[oidc.customFetch] = (url, options) =>
    send(url, { ...options, signal: options.signal ? AbortSignal.any([options.signal, leaseLost]) : leaseLost })
  // RFC 8707 §2: the resource on every token request; MCP "Scope Selection Strategy" for the scope.
  const parameters: Record<string, string> = { resource: auth.resource }
  if (scope) parameters.scope = scope
  // RFC 9449 §5: each token of the account is its own grant, with a key pair of its own.
  const dpopKey = await newGrantKey(dpop, auth.metadata)
  const sentAt = deps.now()
  try {
    const response = await oidc.clientCredentialsGrant(config, parameters, await dpopOptions(config, dpopKey))
    deps.logger.info({ event: 'service_account.ok', ...audit(owner) }, 'service account token obtained')
    return toUpstreamToken(response, {
      issuer: auth.metadata.issuer,
      clientId: client.clientId,
      resource: auth.resource,
      requestedScope: scope,
      now: sentAt,
      dpopKey,
    })
  } catch (error) {
    const failure = describeOAuthFailure(error, `The service account of ${owner.serverId} could not get a token`)
    deps.logger.warn(
      { event: failure.transient ? 'service_account.failed' : 'service_account.refused', ...audit(owner), oauthError: failure.oauthError },
      failure.transient ? 'service account token request failed, will retry' : 'service account token refused',
    )
    if (failure.transient) throw new ServiceAccountUnavailableError(failure.message, { cause: error })
    const hint = failure.oauthError === 'invalid_client' ? '; check client_id and its client_secret or private key' : ''
    throw new ServiceAccountRefusedError(`${failure.message}${hint}`, { cause: error })
  }
}

/** The audit fields (DESIGN.md §6): a service account's tenant and user are `*`, everyone's. */
function audit(owner: TokenOwner): { tenant: string; userId: string; serverId: string } {
  return { tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId }
}
