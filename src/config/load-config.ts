import { readFileSync, existsSync } from 'node:fs'
import { difyImporterRefusal } from './dify-importer.ts'
import { envSchema } from './env.ts'
import { parseServers, type IdentityProviderConfig, type ServerConfig } from './servers.ts'
import { parseAdminKeys, parseApiKeys, generateApiKey, type ApiKey } from './api-keys.ts'
import { parseTrustedHosts, type TrustedHost } from './trusted-hosts.ts'
import type { TrustProxy } from './trust-proxy.ts'

export type { DpopMode, IdentityProviderConfig, ServerConfig } from './servers.ts'
export type { ApiKey } from './api-keys.ts'
export type { TrustedHost } from './trusted-hosts.ts'
export type { TrustProxy } from './trust-proxy.ts'

export interface RelayConfig {
  readonly port: number
  readonly host: string
  /** No trailing slash. */
  readonly publicBaseUrl: string
  /** TOOLS_BASE_URL (default publicBaseUrl), no trailing slash: `servers[0].url` of /openapi.json. */
  readonly toolsBaseUrl: string
  /** A start-up warning when Dify's Custom Tool importer would refuse toolsBaseUrl. */
  readonly toolsBaseUrlWarning: string | undefined
  readonly callbackUrl: string
  readonly apiKeys: readonly ApiKey[]
  /** RELAY_ADMIN_KEYS: keys for the /admin routes; empty means those routes do not exist (404). */
  readonly adminKeys: readonly string[]
  /** Set when RELAY_API_KEYS was empty and a key was generated for this run. */
  readonly generatedApiKey: ApiKey | undefined
  readonly servers: ReadonlyMap<string, ServerConfig>
  /** The servers file's `identity_provider`, for `grant_type: "enterprise"` servers (DESIGN.md §3). */
  readonly identityProvider: IdentityProviderConfig | undefined
  readonly serversSource: string
  /** Start-up warnings about the servers config (unknown fields), each naming the entry. */
  readonly serversWarnings: readonly string[]
  readonly storeUrl: string
  /** RELAY_ENCRYPTION_KEY as given (validated by the store); undefined means "use the SQLite key file". */
  readonly encryptionKey: string | undefined
  readonly toolListCacheTtlMs: number
  readonly upstreamTimeoutMs: number
  /** Binary tool content larger than this (decoded bytes) is kept aside behind a /files link. */
  readonly toolResultInlineBytes: number
  /** FILES_MAX_MB_PER_TENANT in bytes: what one tenant's kept files may hold at a time. */
  readonly filesMaxBytesPerTenant: number
  readonly pool: { readonly maxSessions: number; readonly idleMs: number }
  readonly clientMetadataUrl: string | undefined
  readonly trustedHosts: readonly TrustedHost[]
  /** TRUST_PROXY: which proxies' X-Forwarded-For to believe; undefined: none (the socket's peer is the client). */
  readonly trustProxy: TrustProxy | undefined
  readonly userSecret: string | undefined
  /** `page`: a login link opens a confirmation page; `code`: a sign-in also waits for its one-time code (DESIGN.md §6). */
  readonly signInConfirmation: 'page' | 'code'
  readonly logLevel: string
}

/** A bad configuration: one line naming the variable or server entry, never a secret. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

/** Reads and validates the environment once; the result is frozen. Throws ConfigError. */
export function loadConfig(environment: Record<string, string | undefined>): RelayConfig {
  const parsed = envSchema.safeParse(environment)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ConfigError(`${String(issue.path[0])}: ${issue.message}`)
  }
  const env = parsed.data

  const publicBaseUrl = (env.PUBLIC_BASE_URL ?? `http://localhost:${env.PORT}`).replace(/\/+$/, '')
  const toolsBaseUrl = env.TOOLS_BASE_URL?.replace(/\/+$/, '') ?? publicBaseUrl
  const refusal = difyImporterRefusal(toolsBaseUrl)
  const apiKeys = env.RELAY_API_KEYS === undefined ? undefined : parseApiKeys(env.RELAY_API_KEYS)
  if (apiKeys && 'problem' in apiKeys) throw new ConfigError(`RELAY_API_KEYS: ${apiKeys.problem}`)
  const generatedApiKey = apiKeys ? undefined : generateApiKey()
  const adminKeys = env.RELAY_ADMIN_KEYS === undefined ? undefined : parseAdminKeys(env.RELAY_ADMIN_KEYS, apiKeys ? apiKeys.keys : [])
  if (adminKeys && 'problem' in adminKeys) throw new ConfigError(`RELAY_ADMIN_KEYS: ${adminKeys.problem}`)

  const trusted = parseTrustedHosts(env.OAUTH_TRUSTED_HOSTS)
  if ('problem' in trusted) throw new ConfigError(`OAUTH_TRUSTED_HOSTS: ${trusted.problem}`)

  const { servers, identityProvider, source, warnings } = loadServers(env.MCP_SERVERS_FILE, env.MCP_SERVERS_JSON)

  const storeScheme = /^([a-z]+):\/\//.exec(env.STORE_URL)?.[1]
  if (!storeScheme || !['sqlite', 'memory', 'redis', 'rediss', 'postgres', 'postgresql'].includes(storeScheme)) {
    throw new ConfigError('STORE_URL: must start with sqlite://, memory://, redis://, rediss:// or postgres://')
  }
  if (!env.RELAY_ENCRYPTION_KEY && !['sqlite', 'memory'].includes(storeScheme)) {
    throw new ConfigError(`RELAY_ENCRYPTION_KEY: required with a ${storeScheme} store (every replica must share it)`)
  }

  return Object.freeze({
    port: env.PORT,
    host: env.HOST,
    publicBaseUrl,
    toolsBaseUrl,
    toolsBaseUrlWarning:
      refusal &&
      `TOOLS_BASE_URL${env.TOOLS_BASE_URL === undefined ? ' (not set, so PUBLIC_BASE_URL)' : ''} is ${toolsBaseUrl}, which Dify's Custom Tool import refuses (${refusal}): ` +
        `it refuses localhost, .local names and private, loopback or link-local addresses (SSRF protection). ` +
        `Set TOOLS_BASE_URL to the URL Dify reaches the relay at, e.g. http://mcp-auth-relay:8787 on Dify's Docker network, or a public one`,
    callbackUrl: `${publicBaseUrl}/oauth/callback`,
    apiKeys: Object.freeze(apiKeys ? apiKeys.keys : [generatedApiKey!]),
    adminKeys: Object.freeze(adminKeys ? adminKeys.keys : []),
    generatedApiKey,
    servers: new Map(servers.map((server) => [server.serverId, server])),
    identityProvider,
    serversSource: source,
    serversWarnings: Object.freeze(warnings),
    storeUrl: env.STORE_URL,
    encryptionKey: env.RELAY_ENCRYPTION_KEY,
    toolListCacheTtlMs: env.TOOL_LIST_CACHE_TTL_SECONDS * 1000,
    upstreamTimeoutMs: Math.round(env.UPSTREAM_TIMEOUT_SECONDS * 1000),
    toolResultInlineBytes: env.TOOL_RESULT_INLINE_BYTES,
    filesMaxBytesPerTenant: env.FILES_MAX_MB_PER_TENANT * 1024 * 1024,
    pool: Object.freeze({ maxSessions: env.MCP_POOL_MAX_SESSIONS, idleMs: env.MCP_POOL_IDLE_SECONDS * 1000 }),
    clientMetadataUrl:
      env.OAUTH_CLIENT_METADATA_URL ??
      (publicBaseUrl.startsWith('https://') ? `${publicBaseUrl}/oauth/client-metadata.json` : undefined),
    trustedHosts: Object.freeze(trusted.hosts),
    trustProxy: env.TRUST_PROXY,
    userSecret: env.RELAY_USER_SECRET,
    signInConfirmation: env.SIGN_IN_CONFIRMATION,
    logLevel: env.LOG_LEVEL,
  })
}

function loadServers(
  file: string | undefined,
  json: string | undefined,
): { servers: ServerConfig[]; identityProvider: IdentityProviderConfig | undefined; source: string; warnings: string[] } {
  if (file && json) throw new ConfigError('MCP_SERVERS_JSON: set either MCP_SERVERS_FILE or MCP_SERVERS_JSON, not both')
  let variable: string
  let text: string
  if (json) {
    variable = 'MCP_SERVERS_JSON'
    text = json
  } else {
    variable = 'MCP_SERVERS_FILE'
    const path = file ?? './mcp-servers.json'
    if (!file && !existsSync(path)) return { servers: [], identityProvider: undefined, source: 'none', warnings: [] }
    try {
      text = readFileSync(path, 'utf8')
    } catch (error) {
      throw new ConfigError(`MCP_SERVERS_FILE: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
    }
    variable = `MCP_SERVERS_FILE (${path})`
  }
  let document: unknown
  try {
    document = JSON.parse(text)
  } catch (error) {
    throw new ConfigError(`${variable}: not valid JSON (${(error as Error).message})`)
  }
  const result = parseServers(document)
  if ('problem' in result) throw new ConfigError(`${variable}: ${result.problem}`)
  return {
    servers: result.servers,
    identityProvider: result.identityProvider,
    source: variable,
    warnings: result.warnings.map((warning) => `${variable}: ${warning}`),
  }
}

