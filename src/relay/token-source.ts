import type { ServerConfig } from '../config/load-config.ts'
import type { Challenge } from '../oauth/discovery.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import type { RelayDeps } from './deps.ts'
import type { PendingAnswer } from './pending-sign-in.ts'
import type { Caller } from './types.ts'

/**
 * Why there is no token to send: the user must sign in (with a link), or confirm a sign-in with
 * its code (SIGN_IN_CONFIRMATION=code, no new link meanwhile), or an error to report.
 */
export type NoToken =
  | { kind: 'need-auth'; loginUrl: string; message: string }
  | PendingAnswer
  | { kind: 'error'; code: 'UPSTREAM_ERROR' | 'TIMEOUT'; message: string }

/** A token to send (`renewed`: obtained or refreshed during this call), or why there is none. */
export type TokenFor = { kind: 'token'; token: UpstreamToken; renewed: boolean } | NoToken

/**
 * One way of obtaining the access token for a server: each user's own sign-in
 * (`authorization_code`, user-sign-in.ts), the server's service account (`client_credentials`,
 * service-account.ts), the user's enterprise identity (`enterprise`, enterprise.ts) or the
 * workload's identity (`workload_identity`, workload-identity.ts). The call path (upstream-access.ts) asks a source for "a token for this
 * owner" and tells it what the server answered; how a token is stored, refreshed or obtained,
 * and what the caller is told when there is none, stays with the source.
 */
export interface TokenSource {
  /** What auth-status reports for an authorized server. */
  readonly auth: 'user' | 'service_account' | 'enterprise'
  /** Whose token a call by `caller` sends: its pooled session and per-user tool list go with it. */
  ownerOf(caller: Caller, server: ServerConfig): TokenOwner
  /**
   * The token to send now: stored, and refreshed or obtained anew when close to expiry.
   * `none`: nothing is stored and nothing can be obtained without the user; the server may need no
   * token at all (the call finds out). `known` is the owner's stored token when the caller has read it.
   */
  current(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, known?: UpstreamToken): Promise<TokenFor | { kind: 'none' }>
  /**
   * The server answered 401 to `refused`: a new token (refreshed, obtained, or one that another
   * request or replica stored meanwhile), or why there is none. `refusedWasRenewed`: `refused`
   * itself came from a renewal during this call, so renewing the same way again would not help.
   */
  renew(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, refused: UpstreamToken, refusedWasRenewed: boolean, challenge: Challenge): Promise<TokenFor>
  /** The server wants a token and the owner has none to offer. */
  missing(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, challenge: Challenge): Promise<NoToken>
  /** The server answered 403 `insufficient_scope` to `token`, asking for `required`. */
  stepUp(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, token: UpstreamToken, required: string | undefined): Promise<NoToken>
}

/**
 * Renew a little before expiry: a skew of a quarter of the token's life, at most 60 s, plus up
 * to 10% jitter, so replicas holding the same token do not all renew it at the same instant.
 */
export function isNearExpiry(token: UpstreamToken, now: number): boolean {
  if (token.expiresAt === undefined) return false
  const life = Math.max(token.expiresAt - token.obtainedAt, 0)
  const skew = Math.min(life / 4, 60_000) * (1 + Math.random() * 0.1)
  return now >= token.expiresAt - skew
}
