import * as oidc from 'openid-client'
import type { IdentityProviderConfig } from '../config/load-config.ts'
import { createClientConfiguration } from './client-config.ts'
import { DiscoveryError } from './discovery.ts'
import type { ClientRegistration } from './registration.ts'
import { UrlRefusedError, type FetchLike, type UrlGuard } from './url-guard.ts'

/** What the relay knows of the enterprise identity provider: its metadata and the relay's client there. */
export interface IdentityProvider {
  readonly config: IdentityProviderConfig
  readonly metadata: oidc.ServerMetadata
  readonly client: ClientRegistration
}

/** Metadata is looked up again after a day, as a server's (DESIGN.md §5, discovery). */
const METADATA_TTL_MS = 24 * 60 * 60 * 1000

const known = new WeakMap<IdentityProviderConfig, { provider: Promise<IdentityProvider>; expiresAt: number }>()

/**
 * The identity provider's metadata (DESIGN.md §3): OpenID discovery, then RFC 8414, both through
 * openid-client, which checks that the document names the configured issuer (RFC 8414 §3.3,
 * OpenID Connect Discovery §4.3). A configured `token_endpoint` wins over the discovered one and
 * stands in for a provider that publishes no metadata (then only POST /oauth/identity brings
 * identities: there is no authorization endpoint to sign in at). Kept for a day in this
 * process; a failed lookup is not kept. Throws DiscoveryError.
 */
export function identityProviderOf(deps: { fetch: FetchLike; guard: UrlGuard; timeoutMs: number; now: () => number }, config: IdentityProviderConfig): Promise<IdentityProvider> {
  const cached = known.get(config)
  if (cached && deps.now() < cached.expiresAt) return cached.provider
  const provider = discover(deps, config)
  known.set(config, { provider, expiresAt: deps.now() + METADATA_TTL_MS })
  provider.catch(() => {
    if (known.get(config)?.provider === provider) known.delete(config)
  })
  return provider
}

async function discover(deps: { fetch: FetchLike; guard: UrlGuard; timeoutMs: number }, config: IdentityProviderConfig): Promise<IdentityProvider> {
  let metadata: oidc.ServerMetadata | undefined
  let failure: unknown
  for (const algorithm of ['oidc', 'oauth2'] as const) {
    try {
      const discovered = await oidc.discovery(new URL(config.issuer), config.clientId, undefined, undefined, {
        algorithm,
        [oidc.customFetch]: (url, options) => deps.fetch(url, options as RequestInit),
        timeout: Math.ceil(deps.timeoutMs / 1000),
        // Plain http only for an issuer the operator trusts; the guarded fetch refuses every other.
        ...(new URL(config.issuer).protocol === 'http:' && deps.guard.isTrusted(new URL(config.issuer)) ? { execute: [oidc.allowInsecureRequests] } : {}),
      })
      metadata = discovered.serverMetadata()
      break
    } catch (error) {
      failure = error
      // A refused URL or an issuer mismatch is not fixed by the other well-known URL.
      if (error instanceof UrlRefusedError || (error instanceof oidc.ClientError && error.code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED')) break
    }
  }
  if (!metadata && !config.tokenEndpoint) {
    const reason = failure instanceof UrlRefusedError ? failure.message : failure instanceof Error ? failure.message : 'no metadata'
    throw new DiscoveryError(`the identity provider ${config.issuer} could not be discovered (${reason}); configure its token_endpoint if it publishes no metadata`, { cause: failure })
  }
  const withTokenEndpoint: oidc.ServerMetadata = { ...(metadata ?? { issuer: config.issuer }), ...(config.tokenEndpoint ? { token_endpoint: config.tokenEndpoint } : {}) }
  return { config, metadata: withTokenEndpoint, client: providerClient(config, withTokenEndpoint) }
}

/**
 * The relay's client at the provider: `client_secret` by the method the provider lists first of
 * `client_secret_basic` and `client_secret_post` (RFC 8414 §2: basic when it lists none), or no
 * secret at all (`none`: the client id alone).
 */
function providerClient(config: IdentityProviderConfig, metadata: oidc.ServerMetadata): ClientRegistration {
  const methods = metadata.token_endpoint_auth_methods_supported ?? ['client_secret_basic']
  const authMethod = !config.clientSecret ? 'none' : !methods.includes('client_secret_basic') && methods.includes('client_secret_post') ? 'client_secret_post' : 'client_secret_basic'
  return { clientId: config.clientId, clientSecret: config.clientSecret, authMethod, source: 'configured' }
}

/** openid-client's Configuration for requests to the provider, through the guarded fetch. */
export function providerConfiguration(deps: { fetch: FetchLike; guard: UrlGuard; timeoutMs: number }, provider: IdentityProvider): oidc.Configuration {
  // The SDK's and openid-client's metadata types describe the same RFC 8414 document.
  return createClientConfiguration(deps, { metadata: provider.metadata as never }, provider.client)
}
