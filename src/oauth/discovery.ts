import {
  checkResourceAllowed,
  discoverAuthorizationServerMetadata,
  discoverOAuthProtectedResourceMetadata,
  IssuerMismatchError,
  resourceUrlFromServerUrl,
  type AuthorizationServerMetadata,
} from '@modelcontextprotocol/client'
import type { ServerConfig } from '../config/load-config.ts'
import { dpopAlgFor } from './dpop.ts'
import { UrlRefusedError, type FetchLike, type UrlGuard } from './url-guard.ts'

/** What the relay learned about how to sign in to one MCP server. Holds no secret. */
export interface ServerAuth {
  /** RFC 8707 resource indicator, sent on every authorization, token and refresh request. */
  readonly resource: string
  readonly authorizationServer: string
  readonly metadata: AuthorizationServerMetadata
  /** PRM `scopes_supported`, the fallback of the scope selection strategy. */
  readonly scopesSupported: readonly string[] | undefined
  /** The `scope` of the 401 challenge that started discovery, when it had one. */
  readonly challengeScope: string | undefined
  /** True when the server has no protected-resource metadata (MCP 2025-03-26 servers). */
  readonly legacy: boolean
}

/** Discovery failed in a way the operator or the server's owner must fix. */
export class DiscoveryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DiscoveryError'
  }
}

export interface Challenge {
  readonly resourceMetadataUrl?: URL | undefined
  readonly scope?: string | undefined
}

/**
 * MCP 2025-11-25 Authorization, "Authorization Server Discovery": protected-resource metadata
 * (RFC 9728) from the challenge's `resource_metadata`, else the path-aware then root well-known
 * URL (the SDK tries both); its `resource` must name this server; then authorization-server
 * metadata (RFC 8414 / OIDC, in the spec's order — the SDK's `buildDiscoveryUrls`), whose `issuer`
 * must match. Servers without protected-resource metadata (2025-03-26) use the server's origin as
 * the authorization server and, without metadata there, the default endpoints.
 */
export async function discoverServerAuth(
  deps: { fetch: FetchLike; guard: UrlGuard },
  server: ServerConfig,
  challenge: Challenge,
): Promise<ServerAuth> {
  const serverResource = resourceUrlFromServerUrl(server.mcpUrl)

  // Whether a metadata lookup failed for now (5xx, 429, unreachable) rather than finding nothing.
  let lookupFailed = false
  const metadataFetch: FetchLike = async (input, init) => {
    try {
      const response = await deps.fetch(input, init)
      if (response.status >= 500 || response.status === 429) lookupFailed = true
      return response
    } catch (error) {
      lookupFailed = true
      throw error
    }
  }
  let resourceMetadata: Awaited<ReturnType<typeof discoverOAuthProtectedResourceMetadata>> | undefined
  try {
    resourceMetadata = await discoverOAuthProtectedResourceMetadata(
      server.mcpUrl,
      { resourceMetadataUrl: challenge.resourceMetadataUrl },
      metadataFetch,
    )
  } catch (error) {
    if (error instanceof UrlRefusedError) throw new DiscoveryError(error.message, { cause: error })
    // MCP 2025-03-26 servers are the ones without protected-resource metadata. One that names its
    // metadata in the challenge (RFC 9728 §5.1) is not one, nor is a server whose metadata could
    // not be fetched just now: guessing 2025-03-26 there would send the user to the wrong
    // authorization server, and the guess would be cached for a day. Fail now; the next request
    // discovers again.
    if (challenge.resourceMetadataUrl || lookupFailed) {
      const where = challenge.resourceMetadataUrl?.href ?? `the well-known URLs of ${serverResource.origin}`
      throw new DiscoveryError(`the protected-resource metadata at ${where} could not be read`, { cause: error })
    }
    // No protected-resource metadata: the 2025-03-26 path below, as the SDK's own
    // discoverOAuthServerInfo does.
    resourceMetadata = undefined
  }

  let resource = serverResource.href
  let authorizationServer = new URL('/', serverResource).href
  if (resourceMetadata) {
    // RFC 9728 §3.3 / MCP "resource-mismatch": the metadata must be about this server.
    if (!checkResourceAllowed({ requestedResource: serverResource, configuredResource: resourceMetadata.resource })) {
      throw new DiscoveryError(
        `the protected-resource metadata names resource ${resourceMetadata.resource}, not this server (${serverResource.href}); sign-in refused`,
      )
    }
    // The SDK's note on selectResourceURL: send the metadata's string verbatim (#1968).
    resource = resourceMetadata.resource
    const first = resourceMetadata.authorization_servers?.[0]
    if (first) authorizationServer = first
  }
  if (!URL.canParse(authorizationServer)) throw new DiscoveryError(`authorization server "${authorizationServer}" is not a URL`)
  await checkUrl(deps.guard, new URL(authorizationServer), 'authorization server')

  let metadata: AuthorizationServerMetadata | undefined
  try {
    // RFC 8414 §3.3, MCP 2026-07-28 "Authorization Server Metadata Discovery": the SDK refuses a
    // document whose `issuer` is not the identifier its well-known URL was built from, on every
    // path: the one protected-resource metadata names, and for a server without that metadata
    // (MCP 2025-03-26) its own origin. Without this check there, a server could serve an honest
    // authorization server's issuer with endpoints of its own and collect that server's codes.
    metadata = await discoverAuthorizationServerMetadata(authorizationServer, { fetchFn: deps.fetch })
  } catch (error) {
    if (error instanceof UrlRefusedError) throw new DiscoveryError(error.message, { cause: error })
    if (error instanceof IssuerMismatchError) {
      throw new DiscoveryError(`authorization server metadata has issuer ${error.received}, expected ${authorizationServer}; sign-in refused`, {
        cause: error,
      })
    }
    throw new DiscoveryError(`authorization server metadata at ${authorizationServer} could not be read`, { cause: error })
  }
  if (!metadata && resourceMetadata && !server.oauth.tokenUrl) {
    throw new DiscoveryError(`no authorization server metadata found for ${authorizationServer}`)
  }

  metadata = withConfiguredEndpoints(server, metadata, authorizationServer)

  // MCP 2025-11-25 Authorization, "Authorization Code Protection": PKCE S256 is mandatory, and a
  // server whose metadata does not advertise it must not be used. The 2025-03-26 default
  // endpoints (no metadata at all) list S256 above and so proceed with it.
  // A service account (client credentials) has no authorization request to protect.
  const methods = metadata.code_challenge_methods_supported
  if (server.grantType === 'authorization_code' && !methods?.includes('S256')) {
    throw new DiscoveryError(
      `authorization server ${authorizationServer} does not advertise PKCE S256 (code_challenge_methods_supported); sign-in refused`,
    )
  }
  // `dpop: required` (DESIGN.md §3): a server without DPoP is refused here, before any link or token.
  dpopAlgFor(server.dpop, metadata)

  for (const [field, value] of [
    ['authorization_endpoint', metadata.authorization_endpoint],
    ['token_endpoint', metadata.token_endpoint],
    ['registration_endpoint', metadata.registration_endpoint],
  ] as const) {
    if (!value) continue
    if (!URL.canParse(value)) throw new DiscoveryError(`${field} "${value}" is not a URL`)
    if (isConfigured(server, value)) continue
    await checkUrl(deps.guard, new URL(value), field)
  }

  return Object.freeze({
    resource,
    authorizationServer,
    metadata,
    scopesSupported: resourceMetadata?.scopes_supported,
    challengeScope: challenge.scope,
    legacy: !resourceMetadata,
  })
}

/**
 * Configured `authorization_url` / `token_url` replace what was discovered; with neither metadata
 * nor configuration, MCP 2025-03-26 "Fallbacks for Servers without Metadata Discovery" applies:
 * /authorize, /token and /register at the authorization server's origin.
 */
function withConfiguredEndpoints(
  server: ServerConfig,
  discovered: AuthorizationServerMetadata | undefined,
  authorizationServer: string,
): AuthorizationServerMetadata {
  const base = discovered ?? {
    issuer: authorizationServer,
    authorization_endpoint: new URL('/authorize', authorizationServer).href,
    token_endpoint: new URL('/token', authorizationServer).href,
    registration_endpoint: new URL('/register', authorizationServer).href,
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
  }
  const { authorizationUrl, tokenUrl } = server.oauth
  // Only a user sign-in has an authorization endpoint (configured with the token endpoint or not at
  // all); the other grants need the token endpoint alone.
  if (server.grantType !== 'authorization_code' && tokenUrl) return { ...base, token_endpoint: tokenUrl }
  if (!authorizationUrl || !tokenUrl) return base
  return { ...base, authorization_endpoint: authorizationUrl, token_endpoint: tokenUrl }
}

function isConfigured(server: ServerConfig, url: string): boolean {
  return url === server.oauth.authorizationUrl || url === server.oauth.tokenUrl
}

async function checkUrl(guard: UrlGuard, url: URL, what: string): Promise<void> {
  try {
    await guard.check(url, what)
  } catch (error) {
    if (error instanceof UrlRefusedError) throw new DiscoveryError(error.message, { cause: error })
    throw error
  }
}
