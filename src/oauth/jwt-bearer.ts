import * as oidc from 'openid-client'
import type { DpopMode } from '../config/load-config.ts'
import type { UpstreamToken } from '../store/tokens.ts'
import { createClientConfiguration } from './client-config.ts'
import type { ServerAuth } from './discovery.ts'
import { dpopOptions, newGrantKey } from './dpop.ts'
import type { ClientRegistration } from './registration.ts'
import { toUpstreamToken } from './tokens-from-response.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

/** RFC 7523 §2.1: the JWT bearer authorization grant. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

/**
 * Redeems `assertion` (an ID-JAG, or a workload's own JWT) at the server's token endpoint with
 * the JWT bearer grant, authenticating as `client` (RFC 7523 §3.1: optional), for `auth.resource`
 * (RFC 8707 §2) and `scope`; a DPoP-bound token with a new key pair where the server offers
 * DPoP. openid-client's genericGrantRequest sends it; its errors are the caller's to describe.
 * `signal` abandons the request (a lost refresh lock).
 */
export async function redeemAssertion(
  deps: { fetch: FetchLike; guard: UrlGuard; timeoutMs: number; now: () => number },
  request: { auth: ServerAuth; client: ClientRegistration; assertion: string; scope: string | undefined; dpop: DpopMode; signal: AbortSignal },
): Promise<UpstreamToken> {
  const { auth, client, scope } = request
  const config = createClientConfiguration(deps, auth, client)
  const send = config[oidc.customFetch]!
  config[oidc.customFetch] = (url, options) =>
    send(url, { ...options, signal: options.signal ? AbortSignal.any([options.signal, request.signal]) : request.signal })
  const dpopKey = await newGrantKey(request.dpop, auth.metadata)
  const parameters: Record<string, string> = { assertion: request.assertion, resource: auth.resource }
  if (scope) parameters.scope = scope
  const sentAt = deps.now()
  const response = await oidc.genericGrantRequest(config, JWT_BEARER_GRANT, parameters, await dpopOptions(config, dpopKey))
  return toUpstreamToken(response, { issuer: auth.metadata.issuer, clientId: client.clientId, resource: auth.resource, requestedScope: scope, now: sentAt, dpopKey })
}
