import { AsyncLocalStorage } from 'node:async_hooks'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import type { ServerConfig } from '../config/load-config.ts'
import { isRelayError } from '../errors.ts'
import { connectUpstream, isSessionLost } from '../mcp/connect.ts'
import { createUpstreamFetch, UpstreamAuthError, UpstreamTooLargeError } from '../mcp/upstream-fetch.ts'
import { forgetClientRegistration } from '../oauth/registration.ts'
import { refreshUpstreamToken, TransientRefreshError } from '../oauth/refresh.ts'
import { storeKey } from '../store/keys.ts'
import { LockWaitTimeoutError } from '../store/lock.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { ownerOf, poolKey, redirectUriFor, timeoutFor, toolCacheKey, type RelayDeps } from './deps.ts'
import { pendingSignIn, type PendingAnswer } from './pending-sign-in.ts'
import { createLoginLink, mergeScopes, resolveServerAuth } from './sign-in-link.ts'
import type { Caller } from './types.ts'

export type Access<T> =
  | { kind: 'ok'; value: T; authorized: boolean }
  | { kind: 'need-auth'; loginUrl: string; message: string }
  | PendingAnswer
  | { kind: 'error'; code: 'UPSTREAM_ERROR' | 'TIMEOUT'; message: string }

/**
 * The access token of the call in progress, for the requests that call makes. One user's
 * concurrent calls share a pooled session, whose token is the last caller's: a call still holding
 * the previous token could otherwise put it on the retry of a call that has just refreshed, and
 * that fresh token would seem refused, signing the user out for nothing. Once a call has ended,
 * what outlives it in its context (the session it opened, its GET stream and that stream's
 * reconnects) sends the session's latest token.
 */
const callToken = new AsyncLocalStorage<{ readonly accessToken: string | undefined; ended: boolean }>()

function currentToken(session: () => string | undefined): string | undefined {
  const call = callToken.getStore()
  return call && !call.ended ? call.accessToken : session()
}

/** At most this many step-up sign-ins for one (user, server) within STEP_UP_WINDOW_MS. */
const MAX_STEP_UPS = 2
const STEP_UP_WINDOW_MS = 60 * 60 * 1000

/**
 * Runs `fn` on the caller's pooled session with `server`, with a usable token:
 * - a token close to expiry is refreshed first; a 401 refreshes once and retries once;
 * - no token and a server that wants one: `need-auth` with a login link;
 * - `403 insufficient_scope`: `need-auth` for the larger scope set, within the step-up limit;
 * - a session the server no longer knows (404) is reopened once;
 * - upstream trouble: `error` (TIMEOUT or UPSTREAM_ERROR). Store trouble throws (503).
 */
export async function withUpstream<T>(
  deps: RelayDeps,
  caller: Caller,
  server: ServerConfig,
  fn: (client: Client, timeoutMs: number) => Promise<T>,
  options: { token?: UpstreamToken | undefined } = {},
): Promise<Access<T>> {
  const owner = ownerOf(caller, server)
  const timeoutMs = timeoutFor(deps, server)
  const usable = await freshToken(deps, owner, server, options.token)
  if (usable.kind !== 'token' && usable.kind !== 'none') return usable
  let token = usable.kind === 'token' ? usable.token : undefined
  let refreshed = usable.kind === 'token' && usable.refreshed

  // Read once here: a server known to be open is not looked up again after the call.
  const known = token ? undefined : await deps.discovery.get(server)
  if (known?.kind === 'oauth') return needAuth(deps, owner, server, {})

  let sessionLost = false
  let switched = false
  for (;;) {
    try {
      const call = { accessToken: token?.accessToken, ended: false }
      const value = await callToken
        .run(call, () =>
          deps.pool.use(poolKey(owner), call.accessToken, openSession(deps, owner, server, timeoutMs), (client) =>
            deps.metrics.timeUpstream(server.serverId, () => fn(client, timeoutMs)),
          ),
        )
        .finally(() => {
          call.ended = true
        })
      if (!token && !known) await markOpen(deps, server)
      return { kind: 'ok', value, authorized: token !== undefined }
    } catch (error) {
      if (error instanceof UpstreamAuthError && error.status === 401) {
        if (!token) return needAuth(deps, owner, server, { challenge: error.challenge })
        if (refreshed) {
          // MCP "Token Handling": a token that was just refreshed and is still refused is not
          // refreshed again; the user signs in anew. Unless the store meanwhile holds a newer one
          // (another call or replica signed in or refreshed again): that one gets its own try,
          // and is not deleted on account of the token it replaced.
          const stored = await deps.tokens.get(owner)
          if (stored && stored.accessToken !== token.accessToken && !switched) {
            switched = true
            token = stored
            continue
          }
          if (stored?.accessToken === token.accessToken) {
            await deps.tokens.remove(owner)
            deps.logger.warn({ serverId: server.serverId }, 'fresh token refused by the server, token removed')
          }
          return needAuth(deps, owner, server, { challenge: error.challenge })
        }
        const outcome = await refresh(deps, owner, server, token)
        if (outcome.kind !== 'token') return outcome
        token = outcome.token
        refreshed = true
        continue
      }
      if (error instanceof UpstreamAuthError && error.status === 403 && token) {
        if (error.challenge.error === 'insufficient_scope') return stepUp(deps, owner, server, token, error.challenge.scope)
        return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} refused the request (HTTP 403).` }
      }
      if (isRelayError(error)) throw error
      if (!sessionLost && isSessionLost(error)) {
        // MCP "Session Management": the server forgot the session. The pool has retired that
        // session (and only it: dropping by key here would also close the new session a
        // concurrent caller just opened), so the retry opens or joins a new one.
        sessionLost = true
        continue
      }
      return upstreamFailure(server, error)
    }
  }
}

export type FreshToken =
  | { kind: 'token'; token: UpstreamToken; refreshed: boolean }
  | { kind: 'none' }
  | Exclude<Access<never>, { kind: 'ok' }>

/** The stored token, refreshed first when it is within the skew of its expiry. */
export async function freshToken(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  known: UpstreamToken | undefined,
): Promise<FreshToken> {
  const token = known ?? (await deps.tokens.get(owner))
  if (!token) return { kind: 'none' }
  if (!isNearExpiry(token, deps.now())) return { kind: 'token', token, refreshed: false }
  const outcome = await refresh(deps, owner, server, token)
  if (outcome.kind === 'token') return { kind: 'token', token: outcome.token, refreshed: true }
  // An early refresh that failed for now (the authorization server is down) does not fail a call
  // the current token can still make: the refresh is tried again on the next call.
  if (outcome.kind === 'error' && token.expiresAt !== undefined && deps.now() < token.expiresAt) {
    return { kind: 'token', token, refreshed: false }
  }
  return outcome
}

/**
 * Refresh a little before expiry: a skew of a quarter of the token's life, at most 60 s, plus up
 * to 10% jitter, so replicas holding the same token do not all refresh at the same instant.
 */
export function isNearExpiry(token: UpstreamToken, now: number): boolean {
  if (token.expiresAt === undefined) return false
  const life = Math.max(token.expiresAt - token.obtainedAt, 0)
  const skew = Math.min(life / 4, 60_000) * (1 + Math.random() * 0.1)
  return now >= token.expiresAt - skew
}

async function refresh(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  token: UpstreamToken,
): Promise<{ kind: 'token'; token: UpstreamToken } | Exclude<Access<never>, { kind: 'ok' }>> {
  try {
    const outcome = await refreshUpstreamToken(deps.oauth, owner, token, () => resolveServerAuth(deps, server))
    if (outcome.kind === 'token') return outcome
    if (outcome.oauthError === 'invalid_client') {
      const { auth } = await resolveServerAuth(deps, server)
      await forgetClientRegistration(deps.oauth.registration, auth, redirectUriFor(deps, server))
    }
    await deps.pool.drop(poolKey(owner))
    return needAuth(deps, owner, server, {})
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
  request: { challenge?: UpstreamAuthError['challenge']; scope?: string },
): Promise<Exclude<Access<never>, { kind: 'ok' }>> {
  // SIGN_IN_CONFIRMATION=code: a sign-in waiting for its code answers that, never a new link.
  const pending = await pendingSignIn(deps, owner, server)
  if (pending) return pending
  const link = await createLoginLink(deps, owner, server, request)
  if (link.kind === 'error') return { kind: 'error', code: 'UPSTREAM_ERROR', message: link.message }
  return {
    kind: 'need-auth',
    loginUrl: link.loginUrl,
    message: `Sign-in to ${server.description || server.serverId} is needed. Open the login_url, sign in, then try again.`,
  }
}

interface StepUpRecord {
  count: number
  scope: string
  tokenObtainedAt: number
}

/**
 * MCP 2025-11-25 Authorization, "Step-Up Authorization Flow": a 403 `insufficient_scope` asks
 * the user to sign in for the union of granted and required scopes. A 403 for scopes already
 * granted, or a third step-up for the same (user, server) within an hour, is an error instead
 * of another link: no endless sign-in loops.
 */
async function stepUp(
  deps: RelayDeps,
  owner: TokenOwner,
  server: ServerConfig,
  token: UpstreamToken,
  required: string | undefined,
): Promise<Exclude<Access<never>, { kind: 'ok' }>> {
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
    deps.logger.warn({ serverId: server.serverId }, 'step-up limit reached')
    return {
      kind: 'error',
      code: 'UPSTREAM_ERROR',
      message: `${server.serverId} keeps asking for more scopes (${missing.join(' ')}) after ${MAX_STEP_UPS} extra sign-ins; stopping here. Ask an administrator to check the server's scopes.`,
    }
  }
  await deps.stepUps.set(key, { count, scope, tokenObtainedAt: token.obtainedAt } satisfies StepUpRecord, STEP_UP_WINDOW_MS)
  const link = await createLoginLink(deps, owner, server, { scope })
  if (link.kind === 'error') return { kind: 'error', code: 'UPSTREAM_ERROR', message: link.message }
  return {
    kind: 'need-auth',
    loginUrl: link.loginUrl,
    message: `${server.description || server.serverId} needs more permissions (${missing.join(' ')}). Open the login_url, sign in, then try again.`,
  }
}

function openSession(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, timeoutMs: number) {
  return (accessToken: () => string | undefined, onClose: () => void) =>
    connectUpstream({
      url: server.mcpUrl,
      fetch: createUpstreamFetch({ accessToken: () => currentToken(accessToken), maxResponseBytes: deps.maxUpstreamResponseBytes, fetch: deps.upstreamFetch }),
      timeoutMs,
      onClose,
      onToolsChanged: () => {
        deps.logger.debug({ serverId: server.serverId }, 'tools/list_changed, cache dropped')
        deps.toolCache.drop(toolCacheKey(server, owner)).catch((error: unknown) => {
          deps.logger.warn({ serverId: server.serverId, err: error }, 'tool cache drop failed')
        })
      },
    })
}

async function markOpen(deps: RelayDeps, server: ServerConfig): Promise<void> {
  const known = await deps.discovery.get(server)
  if (!known) await deps.discovery.set(server, { kind: 'open' })
}

function upstreamFailure(server: ServerConfig, error: unknown): Exclude<Access<never>, { kind: 'ok' | 'need-auth' }> {
  if (error instanceof McpError && error.code === ErrorCode.RequestTimeout) {
    return { kind: 'error', code: 'TIMEOUT', message: `${server.serverId} did not answer in time.` }
  }
  if (error instanceof UpstreamTooLargeError) return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId}: ${error.message}.` }
  const detail = error instanceof Error ? error.message : String(error)
  return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} failed: ${truncate(detail, 300)}` }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text
}
