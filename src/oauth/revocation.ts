import * as oidc from 'openid-client'
import type { UpstreamToken } from '../store/tokens.ts'
import { createClientConfiguration, revocationEndpointOf } from './client-config.ts'
import type { ServerAuth } from './discovery.ts'
import { createDpopSession, withDpopProof } from './dpop.ts'
import { describeOAuthFailure } from './oauth-errors.ts'
import type { ClientRegistration } from './registration.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

/** What a reset answers per server (DESIGN.md §4): revoked at the authorization server, not, or no way to. */
export type Revoked = true | false | 'unsupported'

export interface RevocationOutcome {
  readonly revoked: Revoked
  /** Why not, for the log line: an OAuth error code or a sentence without secrets. */
  readonly reason?: string
}

/**
 * RFC 7009: revokes one grant at its authorization server, authenticating as the client that
 * obtained it (openid-client's tokenRevocation, with the grant's client registration). Outcomes:
 * - `unsupported`: the server's metadata names no `revocation_endpoint` (RFC 8414 §2);
 * - `true`: the server accepted the revocation of the refresh token (or, with none, of the access token);
 * - `false`: it refused, failed or did not answer within `timeoutMs` (both requests together).
 * Never throws.
 */
export async function revokeTokens(
  deps: { fetch: FetchLike; guard: UrlGuard },
  auth: ServerAuth,
  client: ClientRegistration,
  token: Pick<UpstreamToken, 'accessToken' | 'refreshToken' | 'dpopKey'>,
  timeoutMs: number,
): Promise<RevocationOutcome> {
  if (!revocationEndpointOf(auth)) return { revoked: 'unsupported' }
  let config: oidc.Configuration
  try {
    config = createClientConfiguration({ ...deps, timeoutMs }, auth, client)
  } catch (error) {
    return { revoked: false, reason: error instanceof Error ? error.message : 'the client configuration failed' }
  }
  const deadline = AbortSignal.timeout(timeoutMs)
  const guarded = config[oidc.customFetch]!
  // A DPoP-bound grant is revoked with proofs of its key (openid-client sends none on revocation).
  const send = token.dpopKey ? withDpopProof((url, init) => guarded(String(url), init as oidc.CustomFetchOptions), createDpopSession(token.dpopKey)) : undefined
  config[oidc.customFetch] = (url, options) => {
    const bounded = { ...options, signal: options.signal ? AbortSignal.any([options.signal, deadline]) : deadline }
    return send ? send(url, bounded as RequestInit) : guarded(url, bounded)
  }

  // RFC 7009 §2.1: revoking the refresh token invalidates the grant's access tokens too where the
  // server can (oidc-provider revokes the whole grant); it goes first, as it is what outlives a reset.
  const [first, second] = token.refreshToken
    ? [{ token: token.refreshToken, hint: 'refresh_token' }, { token: token.accessToken, hint: 'access_token' }]
    : [{ token: token.accessToken, hint: 'access_token' }, undefined]
  try {
    await oidc.tokenRevocation(config, first.token, { token_type_hint: first.hint })
  } catch (error) {
    const failure = describeOAuthFailure(error, 'Token revocation failed')
    return { revoked: false, reason: failure.oauthError ?? failure.message }
  }
  if (second) {
    try {
      await oidc.tokenRevocation(config, second.token, { token_type_hint: second.hint })
    } catch {
      // Safe to drop: the grant is revoked already; a server that cannot revoke its access tokens
      // on their own (oidc-provider 9 answers unsupported_token_type for JWTs, RFC 7009 §2.2.1)
      // lets them run out at their short expiry.
    }
  }
  return { revoked: true }
}
