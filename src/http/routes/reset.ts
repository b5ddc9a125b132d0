import type { FastifyInstance } from 'fastify'
import type { RelayService } from '../../relay/types.ts'
import { callerOf, requireApiKey, type Identity } from '../identity.ts'
import { parseBody, resetRequest } from '../schemas.ts'

export interface ResetRouteOptions {
  relay: RelayService
  identity: Identity
}

/** POST /oauth/reset: the operator's call (not an LLM tool) to forget a user's tokens. */
export async function resetRoute(fastify: FastifyInstance, options: ResetRouteOptions): Promise<void> {
  const { relay, identity } = options
  requireApiKey(fastify, identity)

  fastify.post('/oauth/reset', async (request) => {
    const body = parseBody(resetRequest, request.body)
    return relay.reset(callerOf(request, identity, body.userId), { serverId: body.serverId })
  })
}
