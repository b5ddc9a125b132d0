import { hash } from 'node:crypto'
import type { ServerConfig } from '../config/load-config.ts'
import type { ServerAuth } from './discovery.ts'

/**
 * The redirect URI of a sign-in with `auth`'s authorization server (DESIGN.md §4, §6):
 * - the server entry's own `redirect_uri`, or the plain `$PUBLIC_BASE_URL/oauth/callback` for a
 *   client the operator registered (that is the URI they registered);
 * - the plain callback when the authorization server advertises RFC 9207 `iss`: a response then
 *   names its issuer, and openid-client refuses one without it or with another;
 * - otherwise `$PUBLIC_BASE_URL/oauth/callback/<tag of the issuer>`. RFC 9700 §4.4.2: without
 *   `iss`, a client that talks to several authorization servers tells their responses apart by
 *   a redirect URI per server. A mix-up (an authorization server that sends the browser on to
 *   another, honest one, to have that one's code brought to its own token endpoint) then brings
 *   the honest code back to the honest server's path, where it matches no flow started for the
 *   other: the callback refuses it (oauth/sign-in.ts, finishSignIn).
 */
export function redirectUriFor(callbackUrl: string, server: ServerConfig, auth: ServerAuth): string {
  if (server.oauth.redirectUri) return server.oauth.redirectUri
  if (server.oauth.clientId || advertisesIss(auth)) return callbackUrl
  return `${callbackUrl}/${callbackTagOf(auth.metadata.issuer)}`
}

/** RFC 9207 §3: `authorization_response_iss_parameter_supported`. */
export function advertisesIss(auth: ServerAuth): boolean {
  return auth.metadata.authorization_response_iss_parameter_supported === true
}

/** 128 bits of SHA-256 of the issuer, base64url: one path segment per authorization server. */
function callbackTagOf(issuer: string): string {
  return hash('sha256', issuer, 'base64url').slice(0, 22)
}
