import type { ServerConfig } from '../config/load-config.ts'
import type { Challenge } from '../oauth/discovery.ts'
import { forgetClientRegistration } from '../oauth/registration.ts'
import { refreshUpstreamToken, TransientRefreshError } from '../oauth/refresh.ts'
import { storeKey } from '../store/keys.ts'
import { LockWaitTimeoutError } from '../store/lock.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { redirectUriFor } from '../oauth/redirect-uri.ts'
import { ownerOf, poolKey, type RelayDeps } from './deps.ts'
import { pendingSignIn } from './pending-sign-in.ts'
import { createLoginLink, mergeScopes, rediscover, resolveServerAuth } from './sign-in-link.ts'
import { isNearExpiry, type NoToken, type TokenFor, type TokenSource } from './token-source.ts'

/** At most this many step-up sign-ins for one (user, server) within STEP_UP_WINDOW_MS. */
const MAX_STEP_UPS = 2
const STEP_UP_WINDOW_MS = 60 * 60 * 1000

/**
 * Each user's own sign-in (`grant_type: authorization_code`, the default): tokens stored per
 * (tenant, user, server), refreshed before expiry and once on a 401, and a login link when the
 * user has none or the grant is gone (DESIGN.md §5).
 */
export const userSignIn: TokenSource = {
  auth: 'user',
  ownerOf,

  async current(deps, server, owner, known) {
    const token = known ?? (await deps.tokens.get(owner))
    if (!token) return { kind: 'none' }
    if (!isNearExpiry(token, deps.now())) return { kind: 'token', token, renewed: false }
    const outcome = await refresh(deps, owner, server, token)
    if (outcome.kind === 'token') return outcome
    // An early refresh that failed for now (the authorization server is down) does not fail a call
    // the current token can still make: the refresh is tried again on the next call.
    if (outcome.kind === 'error' && token.expiresAt !== undefined && deps.now() < token.expiresAt) {
      return { kind: 'token', token, renewed: false }
    }
    return outcome
  },

  async renew(deps, server, owner, refused, refusedWasRenewed, challenge) {
    if (!refusedWasRenewed) {
      // MCP 2026-07-28 "Authorization Server Binding": a 401 naming the server's resource metadata
      // is when a client learns that the server moved to another authorization server, so the
      // metadata is read again first; the refresh then goes nowhere if the token's issuer is not
      // the one named now (refresh.ts).
      if (challenge.resourceMetadataUrl) {
        const rediscovered = await rediscover(deps, server, challenge)
        if (rediscovered) return rediscovered
      }
      return refresh(deps, owner, server, refused)
    }
    // MCP "Token Handling": a token that was just refreshed and is still refused is not refreshed
    // again; the user signs in anew. Unless the store meanwhile holds a newer one (another call or
    // replica signed in or refreshed again): that one gets its own try, and is not deleted on
    // account of the token it replaced.
    const stored = await deps.tokens.get(owner)
    if (stored && stored.accessToken !== refused.accessToken) return { kind: 'token', token: stored, renewed: true }
    if (stored) {
      await deps.tokens.remove(owner)
      deps.logger.warn({ serverId: server.serverId }, 'fresh token refused by the server, token removed')
    }
    return needAuth(deps, owner, server, { challenge })
  },

  missing: (deps, server, owner, challenge) => needAuth(deps, owner, server, { challenge }),

  /**
   * MCP 2025-11-25 Authorization, "Step-Up Authorization Flow": a 403 `insufficient_scope` asks
   * the user to sign in for the union of granted and required scopes. A 403 for scopes already
   * granted, or a third step-up for the same (user, server) within an hour, is an error instead
   * of another link: no endless sign-in loops.
   */
  async stepUp(deps, server, owner, token, required) {
    const granted = new Set(token.scope?.split(/\s+/).filter(Boolean))
    const missing = required?.split(/\s+/).filter((scope) => scope && !granted.has(scope)) ?? []
    if (missing.length === 0) {
      return {
        kind: 'error',
        code: 'UPSTREAM_ERROR',
        message: `${server.serverId} refused the request for lack of scope${required ? ` (${required})` : ''}, but the token already has every scope it asked for; signing in again would not help.`,
      }
    }
    // SIGN_IN_CONFIRMATION=code: the step-up sign-in may be done already and waiting for its code.
    const pending = await pendingSignIn(deps, owner, server)
    if (pending) return pending
    const scope = mergeScopes(token.scope, required)!
    const key = storeKey(owner.tenant, owner.userId, owner.serverId)
    const previous = (await deps.stepUps.get(key)) as StepUpRecord | undefined
    // Asking again before the user signed in (same token, same scope) is the same step-up.
    const same = previous && previous.scope === scope && previous.tokenObtainedAt === token.obtainedAt
    const count = same ? previous.count : (previous?.count ?? 0) + 1
    if (count > MAX_STEP_UPS) {
      deps.logger.warn({ event: 'step_up', tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId, scope, outcome: 'limit' }, 'step-up limit reached')
      return {
        kind: 'error',
        code: 'UPSTREAM_ERROR',
        message: `${server.serverId} keeps asking for more scopes (${missing.join(' ')}) after ${MAX_STEP_UPS} extra sign-ins; stopping here. Ask an administrator to check the server's scopes.`,
      }
    }
    await deps.stepUps.set(key, { count, scope, tokenObtainedAt: token.obtainedAt } satisfies StepUpRecord, STEP_UP_WINDOW_MS)
    const link = await createLoginLink(deps, owner, server, { scope })
    if (link.kind === 'error') return { kind: 'error', code: 'UPSTREAM_ERROR', message: link.message }
    deps.logger.info({ event: 'step_up', tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId, scope, outcome: 'link' }, 'step-up sign-in asked')
    return {
      kind: 'need-auth',
      loginUrl: link.loginUrl,
      message: `${server.description || server.serverId} needs more permissions (${missing.join(' ')}). Open the login_url, sign in, then try again.`,
    }
  },
}

interface StepUpRecord {
  count: number
  scope: string
  tokenObtainedAt: number
}

/**
 * Refreshes the user's token: a fresh token; `need-auth` when the grant is gone for good (the
 * token was removed, and with `invalid_client` the registration forgotten); an error when the
 * refresh failed for now (the token is kept). Store trouble throws (503).
 */
async function refresh(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, token: UpstreamToken): Promise<TokenFor> {
  try {
    const outcome = await refreshUpstreamToken(deps.oauth, owner, token, () => resolveServerAuth(deps, server))
    if (outcome.kind === 'token') return { kind: 'token', token: outcome.token, renewed: true }
    if (outcome.oauthError === 'invalid_client') {
      const { auth } = await resolveServerAuth(deps, server)
      await forgetClientRegistration(deps.oauth.registration, auth, redirectUriFor(deps.config.callbackUrl, server, auth))
    }
    await deps.pool.drop(poolKey(owner))
    return needAuth(deps, owner, server, outcome.movedTo ? { movedTo: outcome.movedTo } : {})
  } catch (error) {
    // A refresh lock that stayed held past the wait (another replica stuck) is as transient as a 5xx.
    if (error instanceof TransientRefreshError || error instanceof LockWaitTimeoutError) {
      return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${error.message}. Your sign-in is kept; try again shortly.` }
    }
    throw error
  }
}

async function needAuth(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  request: { challenge?: Challenge; scope?: string; movedTo?: string },
): Promise<NoToken> {
  // SIGN_IN_CONFIRMATION=code: a sign-in waiting for its code answers that, never a new link.
  const pending = await pendingSignIn(deps, owner, server)
  if (pending) return pending
  const link = await createLoginLink(deps, owner, server, request)
  if (link.kind === 'error') return { kind: 'error', code: 'UPSTREAM_ERROR', message: link.message }
  const name = server.description || server.serverId
  return {
    kind: 'need-auth',
    loginUrl: link.loginUrl,
    message: request.movedTo
      ? `${name} has moved to another sign-in service (${request.movedTo}), so the user must sign in again. Open the login_url, sign in, then try again.`
      : `Sign-in to ${name} is needed. Open the login_url, sign in, then try again.`,
  }
}
