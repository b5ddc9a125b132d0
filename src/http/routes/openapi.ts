import type { FastifyInstance } from 'fastify'

export interface OpenApiRouteOptions {
  document: Readonly<Record<string, unknown>>
}

/** GET /openapi.json: what Dify imports as a Custom Tool (three tools). */
export async function openApiRoute(fastify: FastifyInstance, options: OpenApiRouteOptions): Promise<void> {
  const body = JSON.stringify(options.document)
  fastify.get('/openapi.json', async (_request, reply) => reply.header('content-type', 'application/json; charset=utf-8').send(body))
}
