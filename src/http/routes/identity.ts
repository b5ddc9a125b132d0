import type { FastifyInstance } from 'fastify'
import type { RelayService } from '../../relay/types.ts'
import { callerOf, requireApiKey, type Identity } from '../identity.ts'
import { identityRequest, parseBody } from '../schemas.ts'

export interface IdentityRouteOptions {
  relay: RelayService
  identity: Identity
}

/**
 * POST /oauth/identity (DESIGN.md §4): an application in front of Dify that already holds the
 * user's ID token at the identity provider hands it over for the enterprise servers. Not an LLM
 * tool: it is absent from /openapi.json.
 */
export async function identityRoute(fastify: FastifyInstance, options: IdentityRouteOptions): Promise<void> {
  const { relay, identity } = options
  requireApiKey(fastify, identity)

  fastify.post('/oauth/identity', async (request) => {
    const body = parseBody(identityRequest, request.body)
    return relay.submitIdentity(callerOf(request, identity, body.userId), { idToken: body.idToken })
  })
}
