import { createPrivateKey, type KeyObject, type webcrypto } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { z } from 'zod'

/**
 * The servers config, compatible with the plugin's `mcp_servers_json`: `{ "servers": [...] }`,
 * a bare array, or `{ "sets": [...] }`, with the aliases `id`, `url` and `auth_url`.
 */
const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

const typed = (expected: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `must be ${expected}`),
})

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
    grant_type: z.enum(['authorization_code', 'client_credentials']).default('authorization_code'),
    client_private_key: z.string().min(1).optional(),
    client_private_key_file: z.string().min(1).optional(),
    client_signing_alg: z.enum(SIGNING_ALGS).optional(),
    protocol: z.enum(['auto', '2025-11-25', '2026-07-28'], { error: 'must be "auto", "2025-11-25" or "2026-07-28"' }).default('auto'),
  })
  .refine((entry) => !entry.client_secret || entry.client_id, {
    message: 'client_secret is set without client_id',
    path: ['client_secret'],
  })
  .refine((entry) => entry.grant_type === 'client_credentials' || Boolean(entry.authorization_url) === Boolean(entry.token_url), {
    message: 'authorization_url and token_url must be set together',
    path: ['authorization_url'],
  })
  .superRefine((entry, context) => {
    const problem = serviceAccountProblem(entry)
    if (problem) context.addIssue({ code: 'custom', message: problem.message, path: [problem.field] })
  })

/**
 * DESIGN.md §3: a service account (`grant_type: client_credentials`, RFC 6749 §4.4) needs
 * `client_id` and one credential: a secret (`client_secret_basic`, the default, or
 * `client_secret_post`) or a private key (`private_key_jwt`, RFC 7523 §2.2).
 */
function serviceAccountProblem(entry: {
  grant_type: string
  client_id?: string | undefined
  client_secret?: string | undefined
  client_private_key?: string | undefined
  client_private_key_file?: string | undefined
  token_endpoint_auth_method?: string | undefined
}): { field: string; message: string } | undefined {
  const hasKey = Boolean(entry.client_private_key || entry.client_private_key_file)
  if (entry.client_private_key && entry.client_private_key_file) {
    return { field: 'client_private_key_file', message: 'set client_private_key or client_private_key_file, not both' }
  }
  if (entry.grant_type !== 'client_credentials') {
    if (hasKey || entry.token_endpoint_auth_method === 'private_key_jwt') {
      return { field: 'grant_type', message: 'a private key (private_key_jwt) is only used with grant_type "client_credentials"' }
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

export interface ServerConfig {
  readonly serverId: string
  readonly description: string
  readonly mcpUrl: string
  readonly toolCache: 'server' | 'user'
  readonly timeoutMs: number | undefined
  /** `authorization_code`: each user signs in; `client_credentials`: one service-account token for everyone. */
  readonly grantType: 'authorization_code' | 'client_credentials'
  /**
   * The MCP revision to speak (DESIGN.md §3, §5): `auto` asks the server; `2025-11-25` the
   * session-based revisions only, no probe; `2026-07-28` the stateless revision only.
   */
  readonly protocol: 'auto' | '2025-11-25' | '2026-07-28'
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
 * Parses the servers document; returns the servers (and a warning for each field no entry should
 * have) or one sentence naming the entry and field.
 */
export function parseServers(document: unknown): { servers: ServerConfig[]; warnings: string[] } | { problem: string } {
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
  const warnings: string[] = []
  const servers: ServerConfig[] = []
  for (const [index, entry] of result.data.entries()) {
    const where = `servers[${index}] (${entry.server_id})`
    if (seen.has(entry.server_id)) return { problem: `${where}: server_id is used twice` }
    seen.add(entry.server_id)
    const unknown = Object.keys(list[index] as object).filter((field) => !KNOWN_FIELDS.has(field))
    if (unknown.length > 0) warnings.push(`${where}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((field) => JSON.stringify(field)).join(', ')} ignored`)
    const clientKey = readClientKey(entry)
    if ('problem' in clientKey) return { problem: `${where}: ${clientKey.problem}` }
    servers.push(toServerConfig(entry, clientKey.key))
  }
  return { servers, warnings }
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
    oauth: Object.freeze({
      clientId: entry.client_id,
      clientSecret: entry.client_secret,
      clientKey,
      scope: entry.scope || undefined,
      authorizationUrl: entry.authorization_url,
      tokenUrl: entry.token_url,
      tokenEndpointAuthMethod: entry.token_endpoint_auth_method ?? (clientKey ? 'private_key_jwt' : undefined),
      redirectUri: entry.redirect_uri,
    }),
  })
}
