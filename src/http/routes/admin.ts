import type { FastifyInstance } from 'fastify'
import type { RelayService } from '../../relay/types.ts'
import { adminResetBody, connectionsQuery } from '../admin-schemas.ts'
import { requireAdminKey, type Identity } from '../identity.ts'
import { parseBody } from '../schemas.ts'

export interface AdminRoutesOptions {
  relay: RelayService
  identity: Identity
}

/**
 * The operator's view (DESIGN.md §4), registered only when RELAY_ADMIN_KEYS is set (otherwise
 * these paths are 404). Admin keys only: a tool-route key is as wrong here as any other string.
 */
export async function adminRoutes(fastify: FastifyInstance, options: AdminRoutesOptions): Promise<void> {
  const { relay, identity } = options
  requireAdminKey(fastify, identity)

  fastify.get('/admin/connections', async (request) => {
    const query = parseBody(connectionsQuery, request.query)
    return relay.listConnections({ adminKey: request.adminKey }, query)
  })

  fastify.post('/admin/reset', async (request) => {
    const body = parseBody(adminResetBody, request.body)
    return relay.adminReset({ adminKey: request.adminKey }, body)
  })
}
