import type { FastifyInstance } from 'fastify'
import type { RelayService } from '../../relay/types.ts'
import { sendToolRouteError } from '../error-handler.ts'
import { callerOf, requireApiKey, type Identity } from '../identity.ts'
import { authStatusRequest, callToolRequest, listToolsRequest, parseBody } from '../schemas.ts'

export interface ToolRoutesOptions {
  relay: RelayService
  identity: Identity
}

/**
 * The three tools Dify imports from /openapi.json. Domain outcomes (sign-in needed, a tool's own
 * failure) come back from the relay as values and are answered 200, and so are the relay's own
 * transient faults (store unavailable, rate limited), as `ok: false` (DESIGN.md §4).
 */
export async function toolRoutes(fastify: FastifyInstance, options: ToolRoutesOptions): Promise<void> {
  const { relay, identity } = options
  fastify.setErrorHandler((error, request, reply) => sendToolRouteError(request, reply, error))
  requireApiKey(fastify, identity)

  fastify.post('/tools/auth-status', async (request) => {
    const body = parseBody(authStatusRequest, request.body)
    return relay.authStatus(callerOf(request, identity, body.userId), {
      serverIds: body.serverIds,
      forceReauth: body.forceReauth,
      confirmCode: body.confirmCode,
    })
  })

  fastify.post('/tools/list-tools', async (request) => {
    const body = parseBody(listToolsRequest, request.body)
    return relay.listTools(callerOf(request, identity, body.userId), { serverIds: body.serverIds })
  })

  fastify.post('/tools/call-tool', async (request) => {
    const body = parseBody(callToolRequest, request.body)
    return relay.callTool(callerOf(request, identity, body.userId), {
      serverId: body.serverId,
      toolName: body.toolName,
      input: body.input,
      inputRef: body.inputRef,
      inputResponse: body.inputResponse,
    })
  })
}
