import type * as oidc from 'openid-client'
import type { StoredDpopKey, UpstreamToken } from '../store/tokens.ts'

/** Our stored form of a token endpoint response. */
export function toUpstreamToken(
  response: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
  context: {
    issuer: string
    clientId: string
    resource: string
    requestedScope: string | undefined
    previous?: UpstreamToken
    now: number
    /** The key the request's DPoP proof was signed with, if it had one. */
    dpopKey?: StoredDpopKey | undefined
  },
): UpstreamToken {
  const expiresIn = response.expiresIn()
  // RFC 9449 §5: `token_type` DPoP says the token is bound to the proof's key; a server may still
  // answer a proof with a bearer token, which is then sent as one (the key is not kept).
  const bound = context.dpopKey !== undefined && response.token_type.toLowerCase() === 'dpop'
  return {
    accessToken: response.access_token,
    // A server that does not rotate sends no new refresh token: keep the old one (FIELD-NOTES).
    refreshToken: response.refresh_token ?? context.previous?.refreshToken,
    expiresAt: expiresIn === undefined ? undefined : context.now + expiresIn * 1000,
    // RFC 6749 §5.1: no `scope` in the response means the requested scope was granted.
    scope: response.scope ?? context.previous?.scope ?? context.requestedScope,
    issuer: context.issuer,
    clientId: context.clientId,
    resource: context.resource,
    obtainedAt: context.now,
    ...(bound ? { tokenType: 'DPoP' as const, dpopKey: context.dpopKey } : {}),
  }
}
