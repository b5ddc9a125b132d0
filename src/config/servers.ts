import { createPrivateKey, type KeyObject, type webcrypto } from 'node:crypto'
import { accessSync, constants, readFileSync } from 'node:fs'
import { z } from 'zod'

/**
 * The servers config, compatible with the plugin's `mcp_servers_json`: `{ "servers": [...] }`,
 * a bare array, or `{ "sets": [...] }`, with the aliases `id`, `url` and `auth_url`.
 */
const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

const typed = (expected: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `must be ${expected}`),
})

/**
 * `authorization_code`: each user signs in; `client_credentials`: one service-account token for
 * everyone; `enterprise`: each user's identity at the `identity_provider`, exchanged for an
 * identity assertion grant (SEP-990); `workload_identity`: one token for everyone, obtained with
 * the workload's own JWT (RFC 7523). DESIGN.md §3.
 */
const GRANT_TYPES = ['authorization_code', 'client_credentials', 'enterprise', 'workload_identity'] as const
export type GrantType = (typeof GRANT_TYPES)[number]

/** JWS algorithms a service account's private key may sign its client assertion with (RFC 7518 §3.1). */
const SIGNING_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const
export type SigningAlg = (typeof SIGNING_ALGS)[number]

const httpUrl = z
  .string(typed('an http(s) URL'))
  .trim()
  .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), 'must be an http(s) URL')

const serverEntrySchema = z
  .object({
    server_id: z.string(typed('a string')).trim().regex(SERVER_ID, 'must be 1-64 letters, digits, "_", "-" or "." (no "::")'),
    description: z.string().default(''),
    mcp_url: httpUrl,
    client_id: z.string().min(1).optional(),
    client_secret: z.string().min(1).optional(),
    scope: z.string().trim().optional(),
    authorization_url: httpUrl.optional(),
    token_url: httpUrl.optional(),
    token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']).optional(),
    redirect_uri: httpUrl.optional(),
    tool_cache: z.enum(['server', 'user']).default('server'),
    timeout_seconds: z.number().positive().max(3600).optional(),
    grant_type: z.enum(GRANT_TYPES).default('authorization_code'),
    client_private_key: z.string().min(1).optional(),
    client_private_key_file: z.string().min(1).optional(),
    client_signing_alg: z.enum(SIGNING_ALGS).optional(),
    protocol: z.enum(['auto', '2025-11-25', '2026-07-28'], { error: 'must be "auto", "2025-11-25" or "2026-07-28"' }).default('auto'),
    dpop: z.enum(['auto', 'off', 'required']).default('auto'),
    assertion_file: z.string().trim().min(1).optional(),
  })
  .refine((entry) => !entry.client_secret || entry.client_id, {
    message: 'client_secret is set without client_id',
    path: ['client_secret'],
  })
  // Only a user sign-in has an authorization endpoint; the other grants need the token endpoint alone.
  .refine((entry) => entry.grant_type !== 'authorization_code' || Boolean(entry.authorization_url) === Boolean(entry.token_url), {
    message: 'authorization_url and token_url must be set together',
    path: ['authorization_url'],
  })
  .superRefine((entry, context) => {
    const problem = serviceAccountProblem(entry) ?? extensionGrantProblem(entry)
    if (problem) context.addIssue({ code: 'custom', message: problem.message, path: [problem.field] })
  })

/** The fields of a server entry that say how its grant authenticates. */
interface GrantFields {
  grant_type: string
  client_id?: string | undefined
  client_secret?: string | undefined
  client_private_key?: string | undefined
  client_private_key_file?: string | undefined
  token_endpoint_auth_method?: string | undefined
  assertion_file?: string | undefined
}

/**
 * DESIGN.md §3: a service account (`grant_type: client_credentials`, RFC 6749 §4.4) needs
 * `client_id` and one credential: a secret (`client_secret_basic`, the default, or
 * `client_secret_post`) or a private key (`private_key_jwt`, RFC 7523 §2.2).
 */
function serviceAccountProblem(entry: GrantFields): { field: string; message: string } | undefined {
  const hasKey = Boolean(entry.client_private_key || entry.client_private_key_file)
  if (entry.client_private_key && entry.client_private_key_file) {
    return { field: 'client_private_key_file', message: 'set client_private_key or client_private_key_file, not both' }
  }
  if (entry.grant_type !== 'client_credentials') {
    if (entry.grant_type !== 'enterprise' && (hasKey || entry.token_endpoint_auth_method === 'private_key_jwt')) {
      return { field: 'grant_type', message: 'a private key (private_key_jwt) is only used with grant_type "client_credentials" or "enterprise"' }
    }
    if (entry.client_secret && hasKey) return { field: 'client_secret', message: 'set client_secret or a private key, not both' }
    if (hasKey && entry.token_endpoint_auth_method !== undefined && entry.token_endpoint_auth_method !== 'private_key_jwt') {
      return { field: 'token_endpoint_auth_method', message: 'must be "private_key_jwt" with a private key' }
    }
    if (!hasKey && entry.token_endpoint_auth_method === 'private_key_jwt') {
      return { field: 'token_endpoint_auth_method', message: '"private_key_jwt" needs client_private_key or client_private_key_file' }
    }
    return undefined
  }
  if (!entry.client_id) return { field: 'client_id', message: 'is required with grant_type "client_credentials"' }
  if (!entry.client_secret && !hasKey) {
    return { field: 'client_secret', message: 'grant_type "client_credentials" needs client_secret or client_private_key(_file)' }
  }
  if (entry.client_secret && hasKey) return { field: 'client_secret', message: 'set client_secret or a private key, not both' }
  const method = entry.token_endpoint_auth_method
  if (hasKey && method !== undefined && method !== 'private_key_jwt') {
    return { field: 'token_endpoint_auth_method', message: 'must be "private_key_jwt" with a private key' }
  }
  if (entry.client_secret && (method === 'private_key_jwt' || method === 'none')) {
    return { field: 'token_endpoint_auth_method', message: 'must be "client_secret_basic" or "client_secret_post" with client_secret' }
  }
  return undefined
}

/**
 * The two MCP authorization extensions (DESIGN.md §3). `enterprise`: the identity provider issues
 * its grants to one client at the server's authorization server (the ID-JAG's `client_id`, which
 * the server compares with the client that redeems it), so that client is configured, never
 * registered on the fly. `workload_identity`: the workload's JWT is the only credential (RFC 7523
 * §3.2 makes client authentication optional): no secret or key; `client_id` is sent as is.
 */
function extensionGrantProblem(entry: GrantFields): { field: string; message: string } | undefined {
  if (entry.grant_type === 'workload_identity') {
    if (!entry.assertion_file) return { field: 'assertion_file', message: 'is required with grant_type "workload_identity"' }
    if (entry.client_secret) return { field: 'client_secret', message: 'is not used with grant_type "workload_identity": the assertion is the credential' }
    if (entry.client_private_key || entry.client_private_key_file) {
      return { field: 'client_private_key', message: 'is not used with grant_type "workload_identity": the assertion is the credential' }
    }
    if (entry.token_endpoint_auth_method !== undefined && entry.token_endpoint_auth_method !== 'none') {
      return { field: 'token_endpoint_auth_method', message: 'must be "none" (or left out) with grant_type "workload_identity"' }
    }
    return undefined
  }
  if (entry.assertion_file) return { field: 'assertion_file', message: 'is only used with grant_type "workload_identity"' }
  if (entry.grant_type === 'enterprise' && !entry.client_id) {
    return { field: 'client_id', message: 'is required with grant_type "enterprise" (the client the identity provider issues grants for)' }
  }
  return undefined
}

/** Maps the plugin's alias keys onto the canonical ones, without overriding a canonical key. */
function applyAliases(entry: unknown): unknown {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return entry
  const { id, url, auth_url, ...rest } = entry as Record<string, unknown>
  return {
    ...rest,
    server_id: rest.server_id ?? id,
    mcp_url: rest.mcp_url ?? url,
    authorization_url: rest.authorization_url ?? auth_url,
  }
}

function serverList(document: unknown): unknown {
  if (Array.isArray(document)) return document
  if (typeof document === 'object' && document !== null) {
    const { servers, sets } = document as { servers?: unknown; sets?: unknown }
    return servers ?? sets
  }
  return document
}

const serversDocumentSchema = z.array(z.preprocess(applyAliases, serverEntrySchema))

export type ServerEntry = z.output<typeof serverEntrySchema>

export type DpopMode = 'auto' | 'off' | 'required'

export interface ServerConfig {
  readonly serverId: string
  readonly description: string
  readonly mcpUrl: string
  readonly toolCache: 'server' | 'user'
  readonly timeoutMs: number | undefined
  readonly grantType: GrantType
  /**
   * The MCP revision to speak (DESIGN.md §3, §5): `auto` asks the server; `2025-11-25` the
   * session-based revisions only, no probe; `2026-07-28` the stateless revision only.
   */
  readonly protocol: 'auto' | '2025-11-25' | '2026-07-28'
  /**
   * RFC 9449 sender-constrained tokens: `auto` when the authorization server lists
   * `dpop_signing_alg_values_supported`, `off` never, `required` refuses a server without them.
   */
  readonly dpop: DpopMode
  /** `workload_identity`: the file holding the workload's JWT, read anew for every token request. */
  readonly assertionFile: string | undefined
  readonly oauth: {
    readonly clientId: string | undefined
    readonly clientSecret: string | undefined
    /** A service account's key for `private_key_jwt`, ready to sign (imported once, at start-up). */
    readonly clientKey: { readonly key: webcrypto.CryptoKey; readonly alg: SigningAlg } | undefined
    readonly scope: string | undefined
    readonly authorizationUrl: string | undefined
    readonly tokenUrl: string | undefined
    readonly tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none' | undefined
    readonly redirectUri: string | undefined
  }
}

/** The fields a server entry may have: anything else is named in a start-up warning (a typo must not pass unseen). */
const KNOWN_FIELDS = new Set([...Object.keys(serverEntrySchema.shape), 'id', 'url', 'auth_url'])

/**
 * The enterprise identity provider (DESIGN.md §3, `identity_provider`): where each user's identity
 * for `grant_type: "enterprise"` servers comes from. `token_endpoint` is for a provider without
 * metadata; otherwise OpenID discovery, then RFC 8414, find it.
 */
const identityProviderSchema = z.object({
  issuer: httpUrl,
  client_id: z.string(typed('a string')).min(1, 'is required'),
  client_secret: z.string().min(1).optional(),
  token_endpoint: httpUrl.optional(),
  scope: z.string().trim().optional(),
}, { error: 'must be an object with issuer and client_id' })

export interface IdentityProviderConfig {
  /** Compared as a string with the `iss` of every ID token (OpenID Connect Core §3.1.3.7). */
  readonly issuer: string
  readonly clientId: string
  readonly clientSecret: string | undefined
  readonly tokenEndpoint: string | undefined
  /** What the relay asks for at sign-in: `openid` plus the configured scope. */
  readonly scope: string
}

const PROVIDER_FIELDS = new Set(Object.keys(identityProviderSchema.shape))

function parseIdentityProvider(document: unknown): { provider: IdentityProviderConfig | undefined; warnings: string[] } | { problem: string } {
  const raw = typeof document === 'object' && document !== null && !Array.isArray(document) ? (document as { identity_provider?: unknown }).identity_provider : undefined
  if (raw === undefined) return { provider: undefined, warnings: [] }
  const result = identityProviderSchema.safeParse(raw)
  if (!result.success) {
    const issue = result.error.issues[0]!
    return { problem: `identity_provider: ${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}` }
  }
  const { issuer, client_id, client_secret, token_endpoint, scope } = result.data
  const unknown = Object.keys(raw as object).filter((field) => !PROVIDER_FIELDS.has(field))
  const scopes = new Set(['openid', ...(scope?.split(/\s+/).filter(Boolean) ?? [])])
  return {
    provider: Object.freeze({
      issuer,
      clientId: client_id,
      clientSecret: client_secret,
      tokenEndpoint: token_endpoint,
      scope: [...scopes].join(' '),
    }),
    warnings: unknown.length > 0 ? [`identity_provider: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((field) => JSON.stringify(field)).join(', ')} ignored`] : [],
  }
}

/**
 * Parses the servers document; returns the servers (and a warning for each field no entry should
 * have) or one sentence naming the entry and field.
 */
export function parseServers(
  document: unknown,
): { servers: ServerConfig[]; identityProvider: IdentityProviderConfig | undefined; warnings: string[] } | { problem: string } {
  const provider = parseIdentityProvider(document)
  if ('problem' in provider) return provider
  const list = serverList(document)
  if (!Array.isArray(list)) return { problem: 'expected {"servers": [...]}, {"sets": [...]} or an array of servers' }
  const result = serversDocumentSchema.safeParse(list)
  if (!result.success) {
    const issue = result.error.issues[0]!
    const [index, ...field] = issue.path
    const rawEntry = typeof index === 'number' ? (applyAliases(list[index]) as { server_id?: unknown }) : undefined
    const named = typeof rawEntry?.server_id === 'string' ? ` (${rawEntry.server_id})` : ''
    const where = typeof index === 'number' ? `servers[${index}]${named}` : 'servers'
    const fieldName = field.length > 0 ? `${field.join('.')}: ` : ''
    return { problem: `${where}: ${fieldName}${issue.message}` }
  }
  const seen = new Set<string>()
  const warnings: string[] = [...provider.warnings]
  const servers: ServerConfig[] = []
  for (const [index, entry] of result.data.entries()) {
    const where = `servers[${index}] (${entry.server_id})`
    if (seen.has(entry.server_id)) return { problem: `${where}: server_id is used twice` }
    seen.add(entry.server_id)
    const unknown = Object.keys(list[index] as object).filter((field) => !KNOWN_FIELDS.has(field))
    if (unknown.length > 0) warnings.push(`${where}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((field) => JSON.stringify(field)).join(', ')} ignored`)
    const clientKey = readClientKey(entry)
    if ('problem' in clientKey) return { problem: `${where}: ${clientKey.problem}` }
    if (entry.grant_type === 'enterprise' && !provider.provider) {
      return { problem: `${where}: grant_type: "enterprise" needs a top-level identity_provider` }
    }
    // Read anew for every token request (a platform may write it after start-up): only a warning now.
    if (entry.assertion_file && !isReadable(entry.assertion_file)) warnings.push(`${where}: assertion_file ${entry.assertion_file} cannot be read yet`)
    servers.push(toServerConfig(entry, clientKey.key))
  }
  return { servers, identityProvider: provider.provider, warnings }
}

function isReadable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK)
    return true
  } catch {
    return false
  }
}

/**
 * A service account's private key (PEM text or file), imported once for signing: its JWS
 * algorithm is `client_signing_alg` or the key type's usual one (RSA: RS256, EC: by curve,
 * Ed25519: EdDSA). Never echoes the key.
 */
function readClientKey(entry: ServerEntry): { key: ServerConfig['oauth']['clientKey'] } | { problem: string } {
  let pem = entry.client_private_key
  if (entry.client_private_key_file) {
    try {
      pem = readFileSync(entry.client_private_key_file, 'utf8')
    } catch (error) {
      return { problem: `client_private_key_file: cannot read ${entry.client_private_key_file} (${(error as NodeJS.ErrnoException).code ?? 'error'})` }
    }
  }
  if (pem === undefined) return { key: undefined }
  const field = entry.client_private_key_file ? 'client_private_key_file' : 'client_private_key'
  let keyObject: KeyObject
  try {
    keyObject = createPrivateKey(pem)
  } catch {
    return { problem: `${field}: is not a PEM private key` }
  }
  const alg = entry.client_signing_alg ?? defaultAlg(keyObject)
  const algorithm = alg && webCryptoAlgorithm(alg, keyObject)
  if (!alg || !algorithm) {
    return { problem: `${field}: a ${keyObject.asymmetricKeyType} key cannot sign with ${entry.client_signing_alg ?? 'any supported algorithm'}` }
  }
  try {
    return { key: Object.freeze({ key: keyObject.toCryptoKey(algorithm, false, ['sign']), alg }) }
  } catch {
    return { problem: `${field}: a ${keyObject.asymmetricKeyType} key cannot sign with ${alg}` }
  }
}

const CURVE_ALGS: Record<string, SigningAlg> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' }

function defaultAlg(key: KeyObject): SigningAlg | undefined {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return 'RS256'
    case 'rsa-pss':
      return 'PS256'
    case 'ec':
      return CURVE_ALGS[key.asymmetricKeyDetails?.namedCurve ?? '']
    case 'ed25519':
      return 'EdDSA'
    default:
      return undefined
  }
}

/** The WebCrypto import parameters for `alg` (openid-client reads the JWS alg back from them), if the key fits. */
function webCryptoAlgorithm(alg: SigningAlg, key: KeyObject): webcrypto.AlgorithmIdentifier | webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | undefined {
  const type = key.asymmetricKeyType
  const hash = `SHA-${alg.slice(2)}`
  if (alg.startsWith('RS') && type === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash }
  if (alg.startsWith('PS') && (type === 'rsa' || type === 'rsa-pss')) return { name: 'RSA-PSS', hash }
  if (alg.startsWith('ES') && type === 'ec' && CURVE_ALGS[key.asymmetricKeyDetails?.namedCurve ?? ''] === alg) {
    return { name: 'ECDSA', namedCurve: `P-${alg === 'ES512' ? '521' : alg.slice(2)}` }
  }
  if (alg === 'EdDSA' && type === 'ed25519') return { name: 'Ed25519' }
  return undefined
}

function toServerConfig(entry: ServerEntry, clientKey: ServerConfig['oauth']['clientKey']): ServerConfig {
  return Object.freeze({
    serverId: entry.server_id,
    description: entry.description,
    mcpUrl: new URL(entry.mcp_url).href,
    toolCache: entry.tool_cache,
    timeoutMs: entry.timeout_seconds === undefined ? undefined : Math.round(entry.timeout_seconds * 1000),
    grantType: entry.grant_type,
    protocol: entry.protocol,
    dpop: entry.dpop,
    assertionFile: entry.assertion_file,
    oauth: Object.freeze({
      clientId: entry.client_id,
      clientSecret: entry.client_secret,
      clientKey,
      scope: entry.scope || undefined,
      authorizationUrl: entry.authorization_url,
      tokenUrl: entry.token_url,
      tokenEndpointAuthMethod:
        entry.token_endpoint_auth_method ?? (clientKey ? 'private_key_jwt' : entry.grant_type === 'workload_identity' ? 'none' : undefined),
      redirectUri: entry.redirect_uri,
    }),
  })
}
