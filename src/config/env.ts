import { isIP } from 'node:net'
import { z } from 'zod'
import { parseTrustProxy } from './trust-proxy.ts'

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max)
const optionalText = z
  .string()
  .trim()
  .transform((value) => value || undefined)
  .optional()

const httpUrl = optionalText.refine(
  (value) => value === undefined || (URL.canParse(value) && /^https?:$/.test(new URL(value).protocol)),
  'must be an http(s) URL',
)

/** Every environment variable the relay reads (DESIGN.md §3). */
export const envSchema = z.object({
  PORT: integer(0, 65535).default(8787),
  // DESIGN.md §3: a name or an IPv4/IPv6 literal, IPv6 with or without brackets (`::`, `[::1]`).
  HOST: z
    .string()
    .trim()
    .transform((value) => value.replace(/^\[(.*)\]$/, '$1'))
    .refine(
      (value) => isIP(value) !== 0 || (URL.canParse(`http://${value}`) && new URL(`http://${value}`).host === value.toLowerCase()),
      'must be a host name or an IP address',
    )
    .default('0.0.0.0'),
  PUBLIC_BASE_URL: httpUrl,
  // DESIGN.md §3: where Dify reaches the tool routes (servers[0].url of /openapi.json).
  TOOLS_BASE_URL: httpUrl,
  RELAY_API_KEYS: optionalText,
  RELAY_ADMIN_KEYS: optionalText,
  MCP_SERVERS_FILE: optionalText,
  MCP_SERVERS_JSON: optionalText,
  STORE_URL: z.string().trim().min(1).default('sqlite://./data/relay.sqlite'),
  RELAY_ENCRYPTION_KEY: optionalText,
  TOOL_LIST_CACHE_TTL_SECONDS: integer(0, 7 * 24 * 3600).default(300),
  TOOL_RESULT_INLINE_BYTES: integer(0, 16 * 1024 * 1024).default(8192),
  // MiB of kept files per tenant at a time (DESIGN.md §3), up to 1 TiB.
  FILES_MAX_MB_PER_TENANT: integer(1, 1024 * 1024).default(256),
  UPSTREAM_TIMEOUT_SECONDS: z.coerce.number().positive().max(3600).default(50),
  MCP_POOL_MAX_SESSIONS: integer(1, 1_000_000).default(1000),
  MCP_POOL_IDLE_SECONDS: integer(1, 7 * 24 * 3600).default(300),
  OAUTH_CLIENT_METADATA_URL: optionalText.refine(
    (value) => value === undefined || (URL.canParse(value) && new URL(value).protocol === 'https:'),
    'must be an https URL',
  ),
  OAUTH_TRUSTED_HOSTS: z.string().default(''),
  // DESIGN.md §6: `code` also holds a completed sign-in until the user gives the assistant its one-time code.
  SIGN_IN_CONFIRMATION: z.enum(['page', 'code'], { error: 'must be page or code' }).default('page'),
  TRUST_PROXY: optionalText.transform((value, context) => {
    if (value === undefined) return undefined
    const parsed = parseTrustProxy(value)
    if ('setting' in parsed) return parsed.setting
    context.addIssue({ code: 'custom', message: parsed.problem })
    return z.NEVER
  }),
  RELAY_USER_SECRET: optionalText.refine((value) => value === undefined || value.length >= 32, 'must be at least 32 characters'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
})

export type Env = z.output<typeof envSchema>
