import * as oidc from 'openid-client'
import type { ServerAuth } from './discovery.ts'
import type { ClientRegistration } from './registration.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

/**
 * The openid-client Configuration for one (authorization server, client): openid-client does the
 * grants, PKCE, `state` and RFC 9207 `iss` checks and the token-endpoint client authentication,
 * given the metadata the SDK discovered.
 */
export function createClientConfiguration(
  deps: { fetch: FetchLike; guard: UrlGuard; timeoutMs: number },
  auth: Pick<ServerAuth, 'metadata'>,
  client: ClientRegistration,
): oidc.Configuration {
  const config = new oidc.Configuration(
    // The SDK types extra metadata fields as unknown; openid-client's ServerMetadata is the same document.
    auth.metadata as oidc.ServerMetadata,
    // No client id (a workload's JWT bearer grant, RFC 7523 §3.1): openid-client needs one, which
    // no request then carries.
    client.clientId || ANONYMOUS_CLIENT,
    { token_endpoint_auth_method: client.authMethod },
    client.clientId ? clientAuthentication(client) : () => undefined,
  )
  config[oidc.customFetch] = (url, options) => deps.fetch(url, options as RequestInit)
  config.timeout = Math.ceil(deps.timeoutMs / 1000)
  // Plain http only reaches hosts the guard trusts (OAUTH_TRUSTED_HOSTS or an mcp_url host);
  // the guarded fetch refuses every other http URL before a request leaves.
  if (usesPlainHttp(auth) && isTrustedEverywhere(deps.guard, auth)) oidc.allowInsecureRequests(config)
  return config
}

const ANONYMOUS_CLIENT = 'anonymous'

function clientAuthentication(client: ClientRegistration): oidc.ClientAuth {
  switch (client.authMethod) {
    case 'client_secret_basic':
      return clientSecretBasic(client.clientSecret)
    case 'client_secret_post':
      return oidc.ClientSecretPost(client.clientSecret)
    case 'private_key_jwt':
      // RFC 7523 §2.2: a JWT signed with the service account's key; openid-client sets iss, sub,
      // aud (the issuer), jti and exp, and takes the JWS alg from the imported key.
      if (!client.clientKey) throw new TypeError('private_key_jwt needs a private key')
      return oidc.PrivateKeyJwt(client.clientKey.key)
    case 'none':
      return oidc.None()
  }
}

/**
 * RFC 6749 §2.3.1 `client_secret_basic`: the id and secret are form-encoded before Base64. Here
 * with encodeURIComponent, which, like form encoding, leaves `-`, `_` and `.` alone: openid-client's
 * own ClientSecretBasic escapes those too, so a server that does not decode the credentials (the
 * MCP conformance suite's "pre-registration" authorization server, and every server that the
 * SDK's unencoded Basic header works with) sees `pre%2Dregistered%2Dclient` and refuses the
 * client. A server that decodes them gets the same value either way; `:`, space and `%` are escaped.
 */
function clientSecretBasic(clientSecret: string | undefined): oidc.ClientAuth {
  if (typeof clientSecret !== 'string') throw new TypeError('client_secret_basic needs a client secret')
  return (_as, client, _body, headers) => {
    const credentials = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(clientSecret)}`
    headers.set('authorization', `Basic ${Buffer.from(credentials).toString('base64')}`)
  }
}

function endpoints(auth: Pick<ServerAuth, 'metadata'>): URL[] {
  return [auth.metadata.token_endpoint, auth.metadata.authorization_endpoint, revocationEndpointOf(auth)]
    .filter((value): value is string => Boolean(value))
    .map((value) => new URL(value))
}

function usesPlainHttp(auth: Pick<ServerAuth, 'metadata'>): boolean {
  return endpoints(auth).some((url) => url.protocol === 'http:')
}

function isTrustedEverywhere(guard: UrlGuard, auth: Pick<ServerAuth, 'metadata'>): boolean {
  return endpoints(auth).every((url) => url.protocol === 'https:' || guard.isTrusted(url))
}

/** RFC 8414 §2 `revocation_endpoint` (the SDK types it on OAuth metadata only, not on OpenID discovery's). */
export function revocationEndpointOf(auth: Pick<ServerAuth, 'metadata'>): string | undefined {
  const endpoint = (auth.metadata as { revocation_endpoint?: unknown }).revocation_endpoint
  return typeof endpoint === 'string' && endpoint !== '' ? endpoint : undefined
}
