import type { FastifyInstance } from 'fastify'
import { Histogram, type Registry } from 'prom-client'

const HTTP_DURATION = 'mcp_relay_http_request_duration_seconds'

/**
 * Times every answered request by route pattern (never the raw URL: tickets and user input stay
 * out of label values) and serves the registry at GET /metrics.
 */
export function registerHttpMetrics(app: FastifyInstance, registry: Registry): void {
  const duration =
    (registry.getSingleMetric(HTTP_DURATION) as Histogram<'method' | 'route' | 'status_code'> | undefined) ??
    new Histogram({
      name: HTTP_DURATION,
      help: 'Time to answer an HTTP request, by route pattern and status',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    })

  app.addHook('onResponse', async (request, reply) => {
    duration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    )
  })

  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', registry.contentType)
    return registry.metrics()
  })
}
