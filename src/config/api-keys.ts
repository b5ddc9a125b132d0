import { randomBytes } from 'node:crypto'

export interface ApiKey {
  /** The namespace of the users this key speaks for (DESIGN.md §3). */
  readonly tenant: string
  readonly key: string
}

const TENANT = /^[A-Za-z0-9_.-]{1,64}$/
export const DEFAULT_TENANT = 'default'

/** Parses `key` or `name:key` entries; returns the keys or one sentence saying what is wrong (never the key). */
export function parseApiKeys(csv: string): { keys: ApiKey[] } | { problem: string } {
  const keys: ApiKey[] = []
  for (const [index, raw] of csv.split(',').entries()) {
    const entry = raw.trim()
    if (!entry) continue
    const colon = entry.indexOf(':')
    const tenant = colon === -1 ? DEFAULT_TENANT : entry.slice(0, colon)
    const key = colon === -1 ? entry : entry.slice(colon + 1)
    if (!TENANT.test(tenant)) return { problem: `entry ${index + 1}: the name must be 1-64 letters, digits, "_", "-" or "."` }
    if (key.length < 16) return { problem: `entry ${index + 1}${colon === -1 ? '' : ` (${tenant})`}: the key must be at least 16 characters` }
    if (keys.some((known) => known.key === key)) return { problem: `entry ${index + 1}: the same key is listed twice` }
    keys.push(Object.freeze({ tenant, key }))
  }
  if (keys.length === 0) return { problem: 'no key given' }
  return { keys }
}

export function generateApiKey(): ApiKey {
  return Object.freeze({ tenant: DEFAULT_TENANT, key: randomBytes(24).toString('base64url') })
}

/**
 * Parses RELAY_ADMIN_KEYS: a comma list of keys (each the whole entry, at least 16 characters) for
 * the /admin routes. None may also be a tool-route key (DESIGN.md §3: the two never overlap in
 * power). Returns the keys or one sentence saying what is wrong (never the key).
 */
export function parseAdminKeys(csv: string, apiKeys: readonly ApiKey[]): { keys: string[] } | { problem: string } {
  const keys: string[] = []
  for (const [index, raw] of csv.split(',').entries()) {
    const key = raw.trim()
    if (!key) continue
    if (key.length < 16) return { problem: `entry ${index + 1}: the key must be at least 16 characters` }
    if (keys.includes(key)) return { problem: `entry ${index + 1}: the same key is listed twice` }
    if (apiKeys.some((apiKey) => apiKey.key === key)) return { problem: `entry ${index + 1}: the key is also in RELAY_API_KEYS; admin keys must differ from tool keys` }
    keys.push(key)
  }
  if (keys.length === 0) return { problem: 'no key given' }
  return { keys }
}
