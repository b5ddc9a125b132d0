import { z } from 'zod'

/**
 * The servers config, compatible with the plugin's `mcp_servers_json`: `{ "servers": [...] }`,
 * a bare array, or `{ "sets": [...] }`, with the aliases `id`, `url` and `auth_url`.
 */
const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

const typed = (expected: string) => ({
  error: (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : `must be ${expected}`),
})

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
    token_endpoint_auth_method: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
    redirect_uri: httpUrl.optional(),
    tool_cache: z.enum(['server', 'user']).default('server'),
    timeout_seconds: z.number().positive().max(3600).optional(),
  })
  .refine((entry) => !entry.client_secret || entry.client_id, {
    message: 'client_secret is set without client_id',
    path: ['client_secret'],
  })
  .refine((entry) => Boolean(entry.authorization_url) === Boolean(entry.token_url), {
    message: 'authorization_url and token_url must be set together',
    path: ['authorization_url'],
  })

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
  readonly oauth: {
    readonly clientId: string | undefined
    readonly clientSecret: string | undefined
    readonly scope: string | undefined
    readonly authorizationUrl: string | undefined
    readonly tokenUrl: string | undefined
    readonly tokenEndpointAuthMethod: 'client_secret_basic' | 'client_secret_post' | 'none' | undefined
    readonly redirectUri: string | undefined
  }
}

/** Parses the servers document; returns the servers or one sentence naming the entry and field. */
export function parseServers(document: unknown): { servers: ServerConfig[] } | { problem: string } {
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
  for (const [index, entry] of result.data.entries()) {
    if (seen.has(entry.server_id)) return { problem: `servers[${index}] (${entry.server_id}): server_id is used twice` }
    seen.add(entry.server_id)
  }
  return { servers: result.data.map(toServerConfig) }
}

function toServerConfig(entry: ServerEntry): ServerConfig {
  return Object.freeze({
    serverId: entry.server_id,
    description: entry.description,
    mcpUrl: new URL(entry.mcp_url).href,
    toolCache: entry.tool_cache,
    timeoutMs: entry.timeout_seconds === undefined ? undefined : Math.round(entry.timeout_seconds * 1000),
    oauth: Object.freeze({
      clientId: entry.client_id,
      clientSecret: entry.client_secret,
      scope: entry.scope || undefined,
      authorizationUrl: entry.authorization_url,
      tokenUrl: entry.token_url,
      tokenEndpointAuthMethod: entry.token_endpoint_auth_method,
      redirectUri: entry.redirect_uri,
    }),
  })
}
