import { hkdfSync, randomBytes } from 'node:crypto'
import type { LookupFunction } from 'node:net'
import type { RelayConfig } from '../config/load-config.ts'
import { createMcpPool } from '../mcp/pool.ts'
import { createEraStore } from '../mcp/eras.ts'
import { createOutputSchemas } from '../mcp/output-schemas.ts'
import { createInputStore, type PendingInput } from '../store/inputs.ts'
import { createToolListCache } from '../mcp/tool-cache.ts'
import { createHttpFetch } from '../mcp/http-fetch.ts'
import { MAX_RESPONSE_BYTES, type FetchLike } from '../mcp/upstream-fetch.ts'
import { createDiscoveryCache } from '../oauth/discovery-cache.ts'
import { createTicketStore } from '../oauth/tickets.ts'
import { createGuardedFetch, createUrlGuard } from '../oauth/url-guard.ts'
import { createFileStore, type StoredFile } from '../store/files.ts'
import { createFlowStore, type SignInFlow } from '../store/flows.ts'
import { createIdentityStore, type ProviderIdentity } from '../store/identities.ts'
import { createPendingSignInStore, type PendingSignIn } from '../store/pending-sign-ins.ts'
import { keyFilePathBeside, loadOrCreateKeyFile } from '../store/key-file.ts'
import { openStore, parseStoreUrl } from '../store/open-store.ts'
import { createSealer, parseEncryptionKeys } from '../store/seal.ts'
import { createSealedMap } from '../store/sealed-map.ts'
import { createTokenStore, tokenKey, type UpstreamToken } from '../store/tokens.ts'
import type { ServiceTokenStore } from '../oauth/client-credentials.ts'
import type { ClientRegistration } from '../oauth/registration.ts'
import type { RelayDeps, RelayLogger } from './deps.ts'
import { noMetrics, type RelayMetrics } from './metrics.ts'
import { createRelayService } from './service.ts'
import type { RelayService } from './types.ts'

export interface CreateRelayOptions {
  readonly logger: RelayLogger
  readonly now?: () => number
  /** The fetch under every upstream MCP request (default: node:http with keep-alive, mcp/http-fetch.ts). */
  readonly upstreamFetch?: FetchLike
  /** How host names resolve, for the SSRF checks and every outbound connection (default: node's dns.lookup). */
  readonly lookup?: LookupFunction
  /** Separates this relay's keys on a shared backend; tests give each run its own. */
  readonly storeKeyPrefix?: string
  /** Where the relay parts record their events (http/metrics.ts over a prom-client registry); default none. */
  readonly metrics?: RelayMetrics
}

/**
 * Opens the store and builds every part of the relay from the config, once, at start-up.
 * `signInKeys` are for the HTTP app's confirmation form (AppDeps).
 */
export async function createRelay(
  config: RelayConfig,
  options: CreateRelayOptions,
): Promise<{ relay: RelayService; deps: RelayDeps; signInKeys: readonly Buffer[] }> {
  const now = options.now ?? Date.now
  const { logger } = options
  const metrics = options.metrics ?? noMetrics
  const store = await openStore(config.storeUrl, { logger, ...(options.storeKeyPrefix ? { keyPrefix: options.storeKeyPrefix } : {}) })
  const keys = encryptionKeys(config)
  const sealer = createSealer(keys)
  const sealed = <T>(name: 'tokens' | 'service-tokens' | 'clients' | 'tickets' | 'flows' | 'pending' | 'files' | 'inputs' | 'identities' | 'pending-identities') =>
    // Registrations are written once: moved to the newest key when read, so retiring an old key
    // does not lose them (sealed-map.ts). Tokens and identities move at their next refresh; flows,
    // pending sign-ins and files live 10 minutes, the tickets' owner index a day.
    createSealedMap<T>({ keyv: store.namespace(name), sealer, logger, resealOnRead: name === 'clients' })

  const guard = createUrlGuard({
    trustedHosts: config.trustedHosts,
    // The operator's own URLs are trusted: each mcp_url's origin, configured OAuth endpoints', and
    // the identity provider's configured issuer and token endpoint.
    configuredUrls: [
      ...[...config.servers.values()].flatMap((server) => [server.mcpUrl, server.oauth.authorizationUrl, server.oauth.tokenUrl]),
      config.identityProvider?.issuer,
      config.identityProvider?.tokenEndpoint,
    ].filter((url): url is string => Boolean(url)),
    ...(options.lookup ? { lookup: options.lookup } : {}),
  })
  const timeoutMs = config.upstreamTimeoutMs
  // DESIGN.md §6: the SSRF rule is checked on the address actually connected to. One connection
  // stack for everything the relay sends out, MCP and OAuth alike: node:http agents whose new
  // sockets resolve through the guard's connectLookup (node:net's `lookup` hook, run at connect
  // time). Chosen over request-filtering-agent, which filters addresses only (no trust by host
  // name or host:port, as OAUTH_TRUSTED_HOSTS and mcp_url hosts need) with a range list of its
  // own, and over undici's `connect.lookup` on a second stack: that needs the undici package
  // beside Node's bundled copy (Node 22 bundles undici 6) and would ignore NODE_USE_ENV_PROXY,
  // which these agents honour.
  const httpFetch = createHttpFetch({ connectLookup: guard.connectLookup })
  const oauthFetch = createGuardedFetch({ guard, timeoutMs, fetch: httpFetch.fetch })
  const tokens = createTokenStore({ map: sealed<UpstreamToken>('tokens'), index: store.tokenIndex })
  const serviceTokenMap = sealed<UpstreamToken>('service-tokens')
  const serviceTokens: ServiceTokenStore = {
    get: (owner) => serviceTokenMap.get(tokenKey(owner)),
    put: (owner, token) => serviceTokenMap.set(tokenKey(owner), token),
  }
  const pool = createMcpPool({ maxSessions: config.pool.maxSessions, idleMs: config.pool.idleMs, now, logger })
  metrics.watchPool(() => pool.size())

  const deps: RelayDeps = {
    config,
    tokens,
    tickets: createTicketStore({ keyv: store.namespace('tickets'), links: sealed<string>('tickets') }),
    pendingSignIns: createPendingSignInStore({ map: sealed<PendingSignIn>('pending'), now }),
    identities: createIdentityStore({ map: sealed<ProviderIdentity>('identities') }),
    pendingIdentities: createPendingSignInStore({ map: sealed<PendingSignIn<ProviderIdentity>>('pending-identities'), now }),
    discovery: createDiscoveryCache({ keyv: store.namespace('discovery') }),
    stepUps: store.namespace('steps'),
    toolCache: createToolListCache({ keyv: store.namespace('tools'), now }),
    eras: createEraStore({ keyv: store.namespace('eras'), now }),
    inputs: createInputStore({ map: sealed<PendingInput>('inputs'), now }),
    outputSchemas: createOutputSchemas({ warn: (serverId, message) => logger.warn({ serverId }, message) }),
    pool,
    files: createFileStore({ map: sealed<StoredFile>('files'), budget: store.fileBudget, maxBytesPerTenant: config.filesMaxBytesPerTenant, now }),
    oauth: {
      callbackUrl: config.callbackUrl,
      fetch: oauthFetch,
      guard,
      timeoutMs,
      flows: createFlowStore({ map: sealed<SignInFlow>('flows') }),
      tokens,
      serviceTokens,
      lock: store.lock,
      now,
      logger,
      onRefreshed: (serverId, outcome) => metrics.recordRefresh(serverId, outcome),
      registration: {
        fetch: oauthFetch,
        clients: sealed<ClientRegistration>('clients'),
        clientMetadataUrl: config.clientMetadataUrl,
        clientName: 'MCP Auth Relay',
      },
    },
    upstreamFetch: options.upstreamFetch ?? httpFetch.fetch,
    maxUpstreamResponseBytes: MAX_RESPONSE_BYTES,
    now,
    logger,
    metrics,
  }
  const close = async () => {
    // After the pool has ended its sessions (service.close): the kept-alive connections go last.
    httpFetch.close()
    await store.close()
  }
  return { relay: createRelayService(deps, { ping: () => store.ping(), close }), deps, signInKeys: signInKeysFrom(keys) }
}

/**
 * The keys of the confirmation form's CSRF token (http/browser-binding.ts), one per encryption
 * key and in its order (the first signs, all verify): derived with HKDF (RFC 5869), so every
 * replica that shares RELAY_ENCRYPTION_KEY (or the SQLite key file) verifies a page another one
 * rendered, and a token reveals nothing of the sealing keys.
 */
function signInKeysFrom(keys: readonly Buffer[]): Buffer[] {
  return keys.map((key) => Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), 'mcp-auth-relay confirmation form v1', 32)))
}

/**
 * RELAY_ENCRYPTION_KEY when set; else, for SQLite, the key file beside the database (created
 * with mode 0600 on first start); for memory://, a key for this process only (nothing outlives it).
 */
function encryptionKeys(config: RelayConfig): Buffer[] {
  if (config.encryptionKey) return parseEncryptionKeys(config.encryptionKey)
  const { kind, path } = parseStoreUrl(config.storeUrl)
  if (kind === 'sqlite' && path) return loadOrCreateKeyFile(keyFilePathBeside(path))
  return [randomBytes(32)]
}
