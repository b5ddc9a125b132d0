// Bearer-token checking for the peer MCP server, as a resource server does it: RFC 9068 JWT
// access tokens verified against the issuer's JWKS, and RFC 6750 challenges.
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose'

/** Verifies an RFC 9068 JWT access token: signature by the issuer's JWKS, iss, exp, aud = resource. */
export function createTokenVerifier(issuer: string, resource: string): (token: string) => Promise<AuthInfo> {
  let jwks: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined
  const getJwks = () => {
    if (!jwks) {
      const discovered = discoverJwksUri(issuer).then((uri) => createRemoteJWKSet(new URL(uri)))
      // A failed discovery is retried on the next request instead of being cached; the caller
      // awaiting `discovered` sees the error itself.
      discovered.catch(() => {
        jwks = undefined
      })
      jwks = discovered
    }
    return jwks
  }
  return async (token) => {
    const { payload } = await jwtVerify(token, await getJwks(), { issuer, audience: resource, typ: 'at+jwt' })
    return {
      token,
      clientId: String(payload.client_id ?? ''),
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
      expiresAt: payload.exp,
      resource: new URL(resource),
      extra: { claims: payload },
    }
  }
}

async function discoverJwksUri(issuer: string): Promise<string> {
  const issuerUrl = new URL(issuer)
  const path = issuerUrl.pathname === '/' ? '' : issuerUrl.pathname
  const candidates = [
    `${issuerUrl.origin}/.well-known/oauth-authorization-server${path}`,
    `${issuerUrl.origin}${path}/.well-known/openid-configuration`,
  ]
  for (const candidate of candidates) {
    const response = await fetch(candidate, { signal: AbortSignal.timeout(5000) })
    if (!response.ok) {
      await response.body?.cancel()
      continue
    }
    const metadata = await response.json() as { issuer?: string; jwks_uri?: string }
    if (metadata.issuer !== issuer) throw new Error(`metadata at ${candidate} names issuer ${metadata.issuer}`)
    if (!metadata.jwks_uri) throw new Error(`metadata at ${candidate} has no jwks_uri`)
    return metadata.jwks_uri
  }
  throw new Error(`no authorization server metadata for ${issuer}`)
}

export function subjectOf(authInfo: AuthInfo | undefined): string | undefined {
  return (authInfo?.extra?.claims as JWTPayload | undefined)?.sub
}

export function missingScopes(authInfo: AuthInfo | undefined, needed: string[]): string[] {
  const granted = new Set(authInfo?.scopes ?? [])
  return needed.filter((scope) => !granted.has(scope))
}

// RFC 6750 §3: auth-params as quoted strings.
export function bearerChallenge(params: Record<string, string | undefined>): string {
  const parts = Object.entries(params)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .map(([name, value]) => `${name}="${value.replace(/["\\]/g, '\\$&')}"`)
  return parts.length ? `Bearer ${parts.join(', ')}` : 'Bearer'
}
