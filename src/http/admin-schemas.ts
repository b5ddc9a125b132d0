import { z } from 'zod'
import { serverIdField, userIdField } from './schemas.ts'

/** The /admin routes' inputs (DESIGN.md §4). Not in /openapi.json: they are an operator's, not an LLM's. */

const MAX_LIMIT = 500
const DEFAULT_LIMIT = 100

// RELAY_API_KEYS names (config/api-keys.ts), and `default` for unnamed keys.
const tenant = z
  .string({ error: (issue) => (issue.input === undefined ? 'is required' : 'must be a string') })
  .trim()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be a tenant name: 1-64 letters, digits, "_", "-" or "."')

/** GET /admin/connections query. Strict: a misspelt filter must not silently list everyone. */
export const connectionsQuery = z
  .strictObject({
    tenant: tenant.optional(),
    user_id: userIdField.optional(),
    server_id: serverIdField,
    limit: z.coerce
      .number({ error: `must be a whole number from 1 to ${MAX_LIMIT}` })
      .int(`must be a whole number from 1 to ${MAX_LIMIT}`)
      .min(1, `must be a whole number from 1 to ${MAX_LIMIT}`)
      .max(MAX_LIMIT, `must be at most ${MAX_LIMIT}`)
      .default(DEFAULT_LIMIT),
    cursor: z.string({ error: 'must be a string' }).min(1).max(1024, 'is not a next_cursor this relay gave out').optional(),
  })
  .transform((query) => ({ tenant: query.tenant, userId: query.user_id, serverId: query.server_id, limit: query.limit, cursor: query.cursor }))

/** POST /admin/reset body. */
export const adminResetBody = z
  .object({ tenant, user_id: userIdField, server_id: serverIdField })
  .transform((body) => ({ tenant: body.tenant, userId: body.user_id, serverId: body.server_id }))
