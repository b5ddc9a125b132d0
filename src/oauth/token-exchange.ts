import * as oidc from 'openid-client'
import { providerConfiguration, type IdentityProvider } from './identity-provider.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

/** RFC 8693 §2.1 and the Identity Assertion JWT Authorization Grant (draft-ietf-oauth-identity-assertion-authz-grant §4.3). */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token'
export const ID_JAG_TYPE = 'urn:ietf:params:oauth:token-type:id-jag'

/** The provider answered the exchange with something other than an ID-JAG. */
export class UnexpectedTokenTypeError extends Error {
  constructor(issued: unknown) {
    super(`the identity provider issued ${typeof issued === 'string' ? issued : 'a token of no stated type'} instead of an identity assertion grant`)
    this.name = 'UnexpectedTokenTypeError'
  }
}

/**
 * SEP-990: the user's ID token exchanged at the identity provider for an identity assertion grant
 * (ID-JAG) for one MCP server: `audience` its authorization server's issuer, `resource` the
 * server itself (RFC 8707), and the scope wanted there. openid-client's genericGrantRequest sends
 * it with the relay's client authentication at the provider (and accepts the `N_A` token type
 * RFC 8693 §2.2.1 gives a token that is not an access token). Returns the ID-JAG; throws
 * openid-client's errors, or UnexpectedTokenTypeError.
 */
export async function requestIdJag(
  deps: { fetch: FetchLike; guard: UrlGuard; timeoutMs: number },
  provider: IdentityProvider,
  request: { idToken: string; audience: string; resource: string; scope: string | undefined; signal: AbortSignal },
): Promise<string> {
  const config = providerConfiguration(deps, provider)
  const send = config[oidc.customFetch]!
  config[oidc.customFetch] = (url, options) =>
    send(url, { ...options, signal: options.signal ? AbortSignal.any([options.signal, request.signal]) : request.signal })
  const parameters: Record<string, string> = {
    requested_token_type: ID_JAG_TYPE,
    audience: request.audience,
    resource: request.resource,
    subject_token: request.idToken,
    subject_token_type: ID_TOKEN_TYPE,
  }
  if (request.scope) parameters.scope = request.scope
  const response = await oidc.genericGrantRequest(config, TOKEN_EXCHANGE_GRANT, parameters)
  // RFC 8693 §2.2.1: issued_token_type says what access_token holds.
  if (response.issued_token_type !== ID_JAG_TYPE) throw new UnexpectedTokenTypeError(response.issued_token_type)
  return response.access_token
}
