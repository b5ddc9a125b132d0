// The bench's authorization server, reduced to what the 2026-07-28 upstreams need to check the
// relay's bearer tokens: RFC 8414 metadata naming a JWKS, and RFC 9068 JWT access tokens signed
// with an Ed25519 key the bench holds. The relay never talks to it: the bench writes each user's
// token into the relay's store (bench/seed-tokens.ts), as a finished sign-in would have.
import type { KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'

const KEY_ID = 'bench'

/** Serves `/.well-known/oauth-authorization-server` and `/jwks` on 127.0.0.1 (port 0). */
export async function startIssuer(publicJwk: object): Promise<{ issuer: string; close(): Promise<void> }> {
  let issuer = ''
  const server = createServer((req, res) => {
    const body =
      req.url === '/.well-known/oauth-authorization-server'
        ? { issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token`, response_types_supported: ['code'] }
        : req.url === '/jwks'
          ? { keys: [{ ...publicJwk, kid: KEY_ID, alg: 'EdDSA', use: 'sig' }] }
          : undefined
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? { error: 'not_found' }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    issuer,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

export interface AccessTokenClaims {
  issuer: string
  /** The MCP server's URL (RFC 8707 resource), checked by the server as `aud`. */
  audience: string
  subject: string
  scope: string
  expiresAt: number
}

/** An RFC 9068 access token (`typ: at+jwt`) as the upstream peers verify it (test/peers/bearer-auth.ts). */
export function mintAccessToken(privateKey: KeyObject, claims: AccessTokenClaims): Promise<string> {
  return new SignJWT({ scope: claims.scope, client_id: 'bench-relay' })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: KEY_ID })
    .setIssuer(claims.issuer)
    .setAudience(claims.audience)
    .setSubject(claims.subject)
    .setIssuedAt()
    .setExpirationTime(Math.floor(claims.expiresAt / 1000))
    .sign(privateKey)
}
