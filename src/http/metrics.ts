import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { RelayMetrics } from '../relay/metrics.ts'
import type { AuthStatusResult, CallToolResult, ListToolsResult } from '../relay/types.ts'

// Every name carries the mcp_relay_ prefix (DESIGN.md §4). Label values are route patterns,
// configured server ids and fixed words, never raw URLs, users, tenants or tickets.
const HTTP_DURATION = 'mcp_relay_http_request_duration_seconds'
const REQUESTS = 'mcp_relay_requests_total'
const UPSTREAM_DURATION = 'mcp_relay_upstream_request_duration_seconds'
const REFRESHES = 'mcp_relay_token_refreshes_total'
const SIGN_INS = 'mcp_relay_sign_ins_total'
const TOOL_CACHE = 'mcp_relay_tool_cache_lookups_total'
const POOL_SESSIONS = 'mcp_relay_pool_sessions'

const SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/**
 * A metric already on `registry` (a second app or relay on the same registry: tests, an
 * in-process restart) or a new one; prom-client refuses to register one name twice.
 */
function metricOn<M>(registry: Registry, name: string, create: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? create()
}

/**
 * The domain outcome of a tool route's answer: they all answer 200 (DESIGN.md §4), so the
 * status code alone says nothing about whether the user got what they asked for.
 */
const TOOL_OUTCOMES: Readonly<Record<string, (body: never) => string>> = {
  '/tools/call-tool': (body: CallToolResult) => (body.ok ? 'ok' : body.error_code),
  '/tools/auth-status': (body: AuthStatusResult) =>
    body.all_authorized ? 'ok' : body.need_auth_server_ids.length > 0 ? 'need_auth' : 'error',
  '/tools/list-tools': (body: ListToolsResult) =>
    body.auth_required.length > 0 ? 'need_auth' : body.errors.length > 0 ? 'error' : 'ok',
}

function outcomeOf(route: string, statusCode: number, body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const error = (body as { error?: { code?: unknown } }).error
  if (statusCode >= 400) return typeof error?.code === 'string' ? error.code : undefined
  // A relay-side fault a tool route answers 200 (STORE_UNAVAILABLE, RATE_LIMITED): counted as that error.
  const fault = body as { ok?: unknown; error_code?: unknown }
  if (fault.ok === false && typeof fault.error_code === 'string') return fault.error_code
  const tool = TOOL_OUTCOMES[route]
  return tool ? tool(body as never) : undefined
}

/**
 * Times every answered request and counts it by route pattern and outcome (the tool routes'
 * domain outcome, the error code of a refused request, else `ok` or `http_<status>`), and serves
 * the registry at GET /metrics.
 */
export function registerHttpMetrics(app: FastifyInstance, registry: Registry): void {
  const duration = metricOn(
    registry,
    HTTP_DURATION,
    () =>
      new Histogram({
        name: HTTP_DURATION,
        help: 'Time to answer an HTTP request, by route pattern and status',
        labelNames: ['method', 'route', 'status_code'],
        buckets: SECONDS_BUCKETS,
        registers: [registry],
      }),
  )
  const requests = metricOn(
    registry,
    REQUESTS,
    () =>
      new Counter({
        name: REQUESTS,
        help: 'Requests answered, by route pattern and outcome (tool routes: ok, need_auth, error or the call-tool error_code; refused requests: the error code)',
        labelNames: ['route', 'outcome'],
        registers: [registry],
      }),
  )
  const outcomes = new WeakMap<FastifyRequest, string>()

  // Runs on every object answer (route results and the JSON error shape) before serialization.
  app.addHook('preSerialization', async (request, reply, payload) => {
    const outcome = outcomeOf(request.routeOptions.url ?? '', reply.statusCode, payload)
    if (outcome) outcomes.set(request, outcome)
    return payload
  })

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched'
    const status = reply.statusCode
    duration.observe({ method: request.method, route, status_code: String(status) }, reply.elapsedTime / 1000)
    requests.inc({ route, outcome: outcomes.get(request) ?? (status < 400 ? 'ok' : `http_${status}`) })
  })

  // Scraped every few seconds: its request lines stay out of the log.
  app.get('/metrics', { logLevel: 'warn' }, async (_request, reply) => {
    reply.header('content-type', registry.contentType)
    return registry.metrics()
  })
}

/** The pools each registry's gauge sums (several relays on one registry: tests). */
const watchedPools = new WeakMap<Registry, Array<() => number>>()

/** The relay parts' metrics (RelayMetrics) on `registry`. */
export function createPrometheusMetrics(registry: Registry): RelayMetrics {
  const upstream = metricOn(
    registry,
    UPSTREAM_DURATION,
    () =>
      new Histogram({
        name: UPSTREAM_DURATION,
        help: 'Time of one upstream MCP operation (tools/call, tools/list with its pages) on a connected session, by server and outcome (ok or error)',
        labelNames: ['server_id', 'outcome'],
        buckets: SECONDS_BUCKETS,
        registers: [registry],
      }),
  )
  const refreshes = metricOn(
    registry,
    REFRESHES,
    () =>
      new Counter({
        name: REFRESHES,
        help: 'Token refreshes by server and outcome: token (a usable token), sign-in (the grant is gone, the user must sign in), transient (failed for now, token kept)',
        labelNames: ['server_id', 'outcome'],
        registers: [registry],
      }),
  )
  const signIns = metricOn(
    registry,
    SIGN_INS,
    () =>
      new Counter({
        name: SIGN_INS,
        help: 'Browsers back at /oauth/callback, by server and outcome (completed: a token was stored; failed)',
        labelNames: ['server_id', 'outcome'],
        registers: [registry],
      }),
  )
  const toolCache = metricOn(
    registry,
    TOOL_CACHE,
    () =>
      new Counter({
        name: TOOL_CACHE,
        help: 'tools/list cache lookups by server and result (hit or miss)',
        labelNames: ['server_id', 'result'],
        registers: [registry],
      }),
  )
  // The gauge reads the pools when scraped; a pool is built after the metrics (create-relay).
  let poolSizes = watchedPools.get(registry)
  if (!poolSizes) watchedPools.set(registry, (poolSizes = []))
  const sizes = poolSizes
  metricOn(
    registry,
    POOL_SESSIONS,
    () =>
      new Gauge({
        name: POOL_SESSIONS,
        help: 'Connected upstream MCP sessions in the pool, one per (tenant, user, server)',
        registers: [registry],
        collect() {
          this.set(sizes.reduce((sum, size) => sum + size(), 0))
        },
      }),
  )

  return {
    async timeUpstream(serverId, run) {
      const end = upstream.startTimer({ server_id: serverId })
      try {
        const value = await run()
        end({ outcome: 'ok' })
        return value
      } catch (error) {
        end({ outcome: 'error' })
        throw error
      }
    },
    recordRefresh: (serverId, outcome) => refreshes.inc({ server_id: serverId, outcome }),
    recordSignIn: (serverId, outcome) => signIns.inc({ server_id: serverId, outcome }),
    recordToolCache: (serverId, result) => toolCache.inc({ server_id: serverId, result }),
    watchPool(size) {
      sizes.push(size)
    },
  }
}
