import type { ServerConfig } from '../config/load-config.ts'
import { isRelayError } from '../errors.ts'
import type { Challenge } from '../oauth/discovery.ts'
import { DiscoveryError } from '../oauth/discovery.ts'
import { asSentence, serverWords } from '../oauth/error-description.ts'
import { identityProviderOf } from '../oauth/identity-provider.ts'
import { redeemAssertion } from '../oauth/jwt-bearer.ts'
import { describeOAuthFailure } from '../oauth/oauth-errors.ts'
import { withRefreshLock } from '../oauth/refresh.ts'
import { requestIdJag, UnexpectedTokenTypeError } from '../oauth/token-exchange.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import { LockWaitTimeoutError } from '../store/lock.ts'
import { tokenKey, type TokenOwner, type UpstreamToken } from '../store/tokens.ts'
import { auditOf, ownerOf, type RelayDeps } from './deps.ts'
import { currentIdentity, pendingIdentityMessage, providerSignIn } from './enterprise-identity.ts'
import { needAuthFields, confirmMessage, type ConfirmOutcome } from './pending-sign-in.ts'
import { confirmProviderSignIn, discardProviderSignIn } from './provider-sign-in.ts'
import { resolveServerAuth, selectScope } from './sign-in-link.ts'
import { isNearExpiry, type NoToken, type TokenFor, type TokenSource } from './token-source.ts'
import type { Caller, ServerStatusEntry } from './types.ts'

/**
 * Enterprise-managed authorization (`grant_type: enterprise`; SEP-990, MCP extension
 * io.modelcontextprotocol/enterprise-managed-authorization; DESIGN.md §3). Each user's token for
 * the server comes from their identity at the enterprise identity provider, not from a sign-in of
 * its own: the ID token is exchanged at the provider for an identity assertion grant (RFC 8693,
 * ID-JAG) for this server, which the server's authorization server redeems for an access token
 * (RFC 7523 JWT bearer grant, with the entry's client authentication). Tokens are stored per
 * (tenant, user, server) like a user's sign-in, obtained anew (never refreshed) when they expire or
 * are refused. The only login link is the provider's, one for every enterprise server; a refused
 * exchange is the server's error, in the provider's words.
 */
export const enterprise: TokenSource = {
  auth: 'enterprise',
  ownerOf,

  async current(deps, server, owner, known) {
    const token = known ?? (await deps.tokens.get(owner))
    if (token && !isNearExpiry(token, deps.now())) return { kind: 'token', token, renewed: false }
    const fresh = await obtain(deps, server, owner, token, {})
    // A token close to expiry, but not past it, still serves while a new one cannot be had.
    if (fresh.kind === 'error' && token?.expiresAt !== undefined && deps.now() < token.expiresAt) return { kind: 'token', token, renewed: false }
    return fresh
  },

  async renew(deps, server, owner, refused, refusedWasRenewed, challenge) {
    if (refusedWasRenewed) {
      return {
        kind: 'error',
        code: 'UPSTREAM_ERROR',
        message: `${server.serverId} refused the token its authorization server just issued for the user's identity (HTTP 401); ask an administrator to check the user's access there.`,
      }
    }
    return obtain(deps, server, owner, refused, challenge)
  },

  // Only reached when renewals ran out (current() always brings a token or says why not).
  async missing(_deps, server) {
    return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} keeps refusing the tokens obtained for the user's identity; ask an administrator to check the user's access there.` }
  },

  async stepUp(_deps, server, _owner, _token, required) {
    return {
      kind: 'error',
      code: 'UPSTREAM_ERROR',
      message: `${server.serverId} refused the request for lack of scope${required ? ` (${required})` : ''}; an administrator can set "scope" in the server entry, which the identity provider must then grant.`,
    }
  },
}

// Token requests running in this process, per token store: concurrent callers share one.
const inProcess = new WeakMap<object, Map<string, Promise<TokenFor>>>()

/**
 * A new token for `owner`, replacing `stale` (the caller's unusable one, or none). Single-flight
 * in this process and across replicas, under the same lease lock as a refresh; a waiter finds the
 * token the first one stored. Outcomes: a token; `need-auth` (the identity is missing or gone for
 * good: the provider's link); an error (the exchange or redeem refused, with the server's words;
 * or a failure that may pass). Store trouble throws (503).
 */
function obtain(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, stale: UpstreamToken | undefined, challenge: Challenge): Promise<TokenFor> {
  const running = inProcess.get(deps.tokens) ?? new Map<string, Promise<TokenFor>>()
  inProcess.set(deps.tokens, running)
  const key = tokenKey(owner)
  const joined = running.get(key)
  if (joined) return joined
  const obtaining = withRefreshLock(deps.oauth, owner, (leaseLost) => obtainUnderLock(deps, server, owner, stale, challenge, leaseLost))
    .catch((error: unknown): TokenFor => {
      if (error instanceof LockWaitTimeoutError) {
        return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} is busy getting a token for this user; try again shortly.` }
      }
      throw error
    })
    .finally(() => running.delete(key))
  running.set(key, obtaining)
  return obtaining
}

async function obtainUnderLock(
  deps: RelayDeps,
  server: ServerConfig,
  owner: TokenOwner,
  stale: UpstreamToken | undefined,
  challenge: Challenge,
  leaseLost: AbortSignal,
): Promise<TokenFor> {
  const current = await deps.tokens.get(owner)
  if (current && current.accessToken !== stale?.accessToken && !isNearExpiry(current, deps.now())) return { kind: 'token', token: current, renewed: true }
  const caller: Caller = { tenant: owner.tenant, userId: owner.userId }
  const identity = await currentIdentity(deps, caller, server)
  if (identity.kind !== 'identity') return identity

  let step: 'discovery' | 'exchange' | 'redeem' = 'discovery'
  let idJag: string | undefined
  try {
    const { auth, client } = await resolveServerAuth(deps, server, challenge.resourceMetadataUrl ? challenge : undefined)
    const provider = await identityProviderOf(deps.oauth, deps.config.identityProvider!)
    const scope = selectScope(server, auth, challenge.scope)
    step = 'exchange'
    // SEP-990: audience is the authorization server's issuer, resource the server as configured.
    idJag = await requestIdJag(deps.oauth, provider, { idToken: identity.identity.idToken, audience: auth.metadata.issuer, resource: server.mcpUrl, scope, signal: leaseLost })
    step = 'redeem'
    const token = await redeemAssertion(deps.oauth, { auth, client, assertion: idJag, scope, dpop: server.dpop, signal: leaseLost })
    await deps.tokens.put(owner, token)
    deps.logger.info({ event: 'enterprise.ok', ...auditOf(owner) }, 'enterprise token obtained')
    return { kind: 'token', token, renewed: true }
  } catch (error) {
    const failure = enterpriseFailure(server, step, error, [identity.identity.idToken, idJag ?? ''])
    if (!failure) throw error
    deps.logger.warn({ event: `enterprise.${failure.transient ? 'failed' : 'refused'}`, ...auditOf(owner), step, oauthError: failure.oauthError }, 'enterprise token not obtained')
    return { kind: 'error', code: 'UPSTREAM_ERROR', message: failure.message }
  }
}

/**
 * The server's error for a failed step, in the words of the server that refused (RFC 6749 §5.2
 * `error_description`), never a token; undefined for the relay's own trouble (store: 503).
 */
function enterpriseFailure(
  server: ServerConfig,
  step: 'discovery' | 'exchange' | 'redeem',
  error: unknown,
  secrets: string[],
): { message: string; transient: boolean; oauthError?: string | undefined } | undefined {
  if (isRelayError(error)) return undefined
  if (error instanceof DiscoveryError || error instanceof UrlRefusedError) {
    return { message: `Sign-in to ${server.serverId} is unavailable: ${error.message}`, transient: false }
  }
  if (error instanceof UnexpectedTokenTypeError) return { message: asSentence(`${server.serverId}: ${error.message}`), transient: false }
  // Discovery fails with the errors above; anything else there is the relay's own fault.
  if (step === 'discovery') return undefined
  const who = step === 'exchange' ? 'The identity provider' : `The authorization server of ${server.serverId}`
  const action = step === 'exchange' ? `grant access to ${server.serverId}` : "accept the identity provider's grant"
  const failure = describeOAuthFailure(error, `${who} did not ${action}`)
  if (failure.transient) return { message: `${failure.message}. Try again shortly.`, transient: true }
  const words = serverWords(error, secrets)
  return { message: asSentence(`${failure.message}${words ? `: ${words}` : ''}`), transient: false, oauthError: failure.oauthError }
}

/**
 * auth-status for an enterprise server: its state for this user, with `"auth": "enterprise"`
 * when authorized. force_reauth gives the provider's login link (signing in again, for example as
 * another account, replaces the identity of every enterprise server); confirm_code completes a
 * provider sign-in waiting for it, once per request however many enterprise servers it names.
 */
export async function enterpriseStatus(
  deps: RelayDeps,
  caller: Caller,
  server: ServerConfig,
  request: { forceReauth: boolean; confirmCode?: string | undefined },
): Promise<ServerStatusEntry> {
  const base = { server_id: server.serverId, description: server.description }
  if (request.forceReauth) {
    await onceFor(request, () => discardProviderSignIn(deps, caller))
    const link = await providerSignIn(deps, caller, server)
    if (link.kind === 'error') return { ...base, status: 'error', message: link.message }
    return { ...base, status: 'need_auth', ...needAuthFields(link), message: 'Open the login_url to sign in with the organization account again (for example as another account).' }
  }
  let note: string | undefined
  if (request.confirmCode !== undefined && deps.config.signInConfirmation === 'code') {
    const code = request.confirmCode
    const outcome = await onceFor(request, () => confirmProviderSignIn(deps, caller, code))
    note = outcome.kind === 'wrong' ? `That confirmation code is not right (${outcome.triesLeft} ${outcome.triesLeft === 1 ? 'try' : 'tries'} left). ${pendingIdentityMessage(deps, server)}` : confirmMessage(outcome, server)
  }
  const current = await enterprise.current(deps, server, ownerOf(caller, server))
  const entry = statusEntry(base, current)
  return note === undefined || entry.status === 'error' ? entry : { ...entry, message: note }
}

function statusEntry(base: { server_id: string; description: string }, current: TokenFor | NoToken | { kind: 'none' }): ServerStatusEntry {
  switch (current.kind) {
    case 'token':
      return { ...base, status: 'authorized', auth: 'enterprise', message: "Connected with the user's organization account." }
    case 'need-auth':
      return { ...base, status: 'need_auth', ...needAuthFields(current), message: current.message }
    case 'error':
      return { ...base, status: 'error', message: current.message }
    case 'none':
      return { ...base, status: 'error', message: 'No token.' }
  }
}

// One auth-status request asks about several servers at once: what acts on the user's identity
// (a confirmation code tried, a pending sign-in dropped) happens once for the request.
const perRequest = new WeakMap<object, Promise<unknown>>()

function onceFor<T>(request: object, act: () => Promise<T>): Promise<T> {
  let running = perRequest.get(request) as Promise<T> | undefined
  if (!running) perRequest.set(request, (running = act()))
  return running
}

export type { ConfirmOutcome }
