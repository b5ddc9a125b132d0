import { registerClient } from '@modelcontextprotocol/sdk/client/auth.js'
import type { ServerConfig } from '../config/load-config.ts'
import type { SealedMap } from '../store/sealed-map.ts'
import { storeKey } from '../store/keys.ts'
import type { ServerAuth } from './discovery.ts'
import { DiscoveryError } from './discovery.ts'
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
 * MCP 2025-11-25 Authorization, "Client Registration Approaches", in the spec's priority:
 * 1. credentials configured for the server; 2. a Client ID Metadata Document, when the server
 * says `client_id_metadata_document_supported` and the relay has an https URL for one;
 * 3. dynamic client registration (RFC 7591). Registrations are stored per (resource, issuer).
 */
export async function ensureClientRegistration(
  deps: RegistrationDeps,
  server: ServerConfig,
  auth: ServerAuth,
  redirectUri: string,
): Promise<ClientRegistration> {
  const configured = server.oauth
  if (configured.clientId) {
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
  if (auth.metadata.client_id_metadata_document_supported === true && deps.clientMetadataUrl) {
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
    throw new DiscoveryError(
      `authorization server ${auth.authorizationServer} supports neither dynamic registration nor client metadata documents; configure client_id for this server`,
    )
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
