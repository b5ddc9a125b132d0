import { registerClient } from '@modelcontextprotocol/client'
import type { ServerConfig } from '../config/load-config.ts'
import type { SealedMap } from '../store/sealed-map.ts'
import { storeKey } from '../store/keys.ts'
import type { ServerAuth } from './discovery.ts'
import { DiscoveryError } from './discovery.ts'
import { advertisesIss } from './redirect-uri.ts'
import type { FetchLike } from './url-guard.ts'

export type TokenEndpointAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none'

/** How the relay identifies itself to one authorization server. */
export interface ClientRegistration {
  readonly clientId: string
  readonly clientSecret: string | undefined
  /** A configured service account's signing key (`private_key_jwt`); never stored. */
  readonly clientKey?: ServerConfig['oauth']['clientKey']
  readonly authMethod: TokenEndpointAuthMethod
  readonly source: 'configured' | 'metadata-document' | 'dynamic'
  /** The authorization server a configured client was first used with (its binding record only). */
  readonly issuer?: string
}

export interface RegistrationDeps {
  readonly fetch: FetchLike
  readonly clients: SealedMap<ClientRegistration>
  /** The Client ID Metadata Document URL, when the relay has an https one. */
  readonly clientMetadataUrl: string | undefined
  readonly clientName: string
}

const inFlight = new Map<string, Promise<ClientRegistration>>()

/**
 * MCP 2026-07-28 Authorization, "Client Registration", in the spec's priority:
 * 1. credentials configured for the server; 2. a Client ID Metadata Document, when the server
 * says `client_id_metadata_document_supported`, the relay has an https URL for one, and the server
 * advertises RFC 9207 `iss` (the document's redirect URIs are the same for every authorization
 * server, so without `iss` a mix-up could not be told apart: redirect-uri.ts); 3. dynamic client
 * registration (RFC 7591), deprecated in favour of the document but still the one way to get a
 * redirect URI per authorization server. Registrations are stored per (resource, issuer,
 * redirect URI) and only ever presented to the issuer that made them (SEP-2352).
 */
export async function ensureClientRegistration(
  deps: RegistrationDeps,
  server: ServerConfig,
  auth: ServerAuth,
  redirectUri: string,
): Promise<ClientRegistration> {
  const configured = server.oauth
  if (configured.clientId) {
    await bindConfiguredClient(deps, server, configured.clientId, auth.metadata.issuer)
    return {
      clientId: configured.clientId,
      clientSecret: configured.clientSecret,
      clientKey: configured.clientKey,
      authMethod:
        configured.tokenEndpointAuthMethod ??
        chooseAuthMethod(Boolean(configured.clientSecret), auth.metadata.token_endpoint_auth_methods_supported),
      source: 'configured',
    }
  }
  if (auth.metadata.client_id_metadata_document_supported === true && deps.clientMetadataUrl && advertisesIss(auth)) {
    return { clientId: deps.clientMetadataUrl, clientSecret: undefined, authMethod: 'none', source: 'metadata-document' }
  }

  const key = registrationKey(auth, redirectUri)
  const stored = await deps.clients.get(key)
  if (stored) return stored

  // One registration per (resource, issuer) at a time in this process; a second replica racing
  // here only registers one extra client, which is harmless.
  const running = inFlight.get(key)
  if (running) return running
  const registering = registerDynamically(deps, auth, redirectUri, key).finally(() => inFlight.delete(key))
  inFlight.set(key, registering)
  return registering
}

/**
 * MCP 2026-07-28 "Authorization Server Binding": pre-registered credentials belong to the
 * authorization server they were registered with, and a client SHOULD surface an error rather
 * than present them to another. The configuration does not say which server that is, so the
 * first issuer they are used with is recorded (no secret is stored: it stays in the config), and a
 * server that later names another authorization server gets an error for the operator instead of
 * the secret.
 */
async function bindConfiguredClient(deps: RegistrationDeps, server: ServerConfig, clientId: string, issuer: string): Promise<void> {
  const key = storeKey('configured', server.serverId, clientId)
  const bound = await deps.clients.get(key)
  if (bound?.issuer === undefined) {
    await deps.clients.set(key, { clientId, clientSecret: undefined, authMethod: 'none', source: 'configured', issuer })
    return
  }
  if (bound.issuer !== issuer) {
    throw new DiscoveryError(
      `${server.serverId} now names the authorization server ${issuer}, but its configured client_id was registered with ${bound.issuer}; the relay does not present it to another authorization server. If the move is intended, register the relay there and put that client_id (and secret) in the server entry`,
    )
  }
}

/** Forgets a stored registration, after the authorization server answered `invalid_client`. */
export async function forgetClientRegistration(deps: RegistrationDeps, auth: ServerAuth, redirectUri: string): Promise<void> {
  await deps.clients.delete(registrationKey(auth, redirectUri))
}

async function registerDynamically(
  deps: RegistrationDeps,
  auth: ServerAuth,
  redirectUri: string,
  key: string,
): Promise<ClientRegistration> {
  if (!auth.metadata.registration_endpoint) {
    const why =
      auth.metadata.client_id_metadata_document_supported === true && deps.clientMetadataUrl
        ? 'supports client metadata documents but does not identify itself in its responses (RFC 9207 iss), and offers no dynamic registration'
        : 'supports neither dynamic registration nor client metadata documents'
    throw new DiscoveryError(`authorization server ${auth.authorizationServer} ${why}; configure client_id for this server`)
  }
  const requested = chooseAuthMethod(true, auth.metadata.token_endpoint_auth_methods_supported)
  let registered
  try {
    registered = await registerClient(auth.authorizationServer, {
      metadata: auth.metadata,
      clientMetadata: {
        client_name: deps.clientName,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: requested,
        application_type: applicationTypeOf(redirectUri),
      },
      fetchFn: deps.fetch,
    })
  } catch (error) {
    throw new DiscoveryError(`dynamic client registration at ${auth.metadata.registration_endpoint} failed`, { cause: error })
  }
  const method = registered.token_endpoint_auth_method
  const registration: ClientRegistration = {
    clientId: registered.client_id,
    clientSecret: registered.client_secret,
    authMethod: isAuthMethod(method) ? method : registered.client_secret ? requested : 'none',
    source: 'dynamic',
  }
  const expiresAt = registered.client_secret_expires_at
  const ttlMs = expiresAt ? Math.max(expiresAt * 1000 - Date.now(), 0) : undefined
  await deps.clients.set(key, registration, ttlMs === 0 ? undefined : ttlMs)
  return registration
}

/**
 * MCP 2026-07-28 "Dynamic Client Registration" (SEP-837): `application_type` is always sent;
 * `native` for a relay reached at a loopback address (a laptop), `web` otherwise. The SDK's
 * resolveClientMetadata makes the same choice, but only for its OAuthClientProvider.
 */
function applicationTypeOf(redirectUri: string): 'native' | 'web' {
  const host = new URL(redirectUri).hostname
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host) ? 'native' : 'web'
}

function registrationKey(auth: ServerAuth, redirectUri: string): string {
  return storeKey(auth.resource, auth.metadata.issuer, redirectUri)
}

/** The secret-based methods first (the relay is a confidential client), `none` when nothing else fits. */
function chooseAuthMethod(hasSecret: boolean, supported: readonly string[] | undefined): TokenEndpointAuthMethod {
  // RFC 8414 §2: when the server lists nothing, client_secret_basic is the default.
  const methods = supported ?? ['client_secret_basic']
  if (hasSecret && methods.includes('client_secret_basic')) return 'client_secret_basic'
  if (hasSecret && methods.includes('client_secret_post')) return 'client_secret_post'
  return 'none'
}

function isAuthMethod(value: unknown): value is TokenEndpointAuthMethod {
  return value === 'client_secret_basic' || value === 'client_secret_post' || value === 'none'
}
