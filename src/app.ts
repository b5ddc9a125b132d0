import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { Registry } from 'prom-client'
import type { RelayConfig } from './config/load-config.ts'
import type { RelayService } from './relay/types.ts'
import { BODY_LIMIT_BYTES, handleClientError, handleFrameworkError, registerErrorHandling } from './http/error-handler.ts'
import { fastifyTrustProxy, requestClient } from './http/client-address.ts'
import { createIdentity } from './http/identity.ts'
import { generateRequestId, loggerOptions } from './http/logging.ts'
import { registerHttpMetrics } from './http/metrics.ts'
import { createOpenApiDocument } from './http/openapi.ts'
import { adminRoutes } from './http/routes/admin.ts'
import { fileRoutes } from './http/routes/files.ts'
import { healthRoutes } from './http/routes/health.ts'
import { identityRoute } from './http/routes/identity.ts'
import { openApiRoute } from './http/routes/openapi.ts'
import { resetRoute } from './http/routes/reset.ts'
import { signInRoutes } from './http/routes/sign-in.ts'
import { toolRoutes } from './http/routes/tools.ts'

export interface AppDeps {
  config: RelayConfig
  relay: RelayService
  /** The confirmation form's CSRF keys, from createRelay (derived from the encryption keys, shared by replicas). */
  signInKeys: readonly Buffer[]
  /** Fastify logger options (redaction and serializers are added to them); default `{ level: config.logLevel }`; false for none. */
  logger?: FastifyServerOptions['logger'] | false
  /**
   * A logger to use instead of `logger` (main.ts shares one with the relay). Build it from
   * `loggerOptions()` in http/logging.ts: the redaction and serializers live there.
   */
  loggerInstance?: FastifyBaseLogger
  /** Where the HTTP metrics go and what GET /metrics serves; default a registry of this app's own. */
  metrics?: Registry
  /** Per-IP limit on /oauth/start and /oauth/callback; default 30 a minute. */
  rateLimit?: { max: number; timeWindowMs: number }
  /**
   * Per-IP limit on /files/:id; default 120 a minute (a chat that shows several images, reloaded
   * a few times, from users behind one address).
   */
  filesRateLimit?: { max: number; timeWindowMs: number }
  /** Milliseconds since the epoch; for signed user ids. Default Date.now. */
  now?: () => number
}

/** The relay's HTTP face (DESIGN.md §4). Closing the app closes the relay. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, relay } = deps

  const app = Fastify({
    ...(deps.loggerInstance ? { loggerInstance: deps.loggerInstance } : { logger: loggerOptions(deps.logger, config.logLevel) }),
    bodyLimit: BODY_LIMIT_BYTES,
    // Room for a login ticket; longer path parameters are refused before routing.
    routerOptions: { maxParamLength: 256 },
    // Every log line of a request carries its id under Fastify's default label, `reqId`.
    genReqId: generateRequestId,
    return503OnClosing: true,
    frameworkErrors: handleFrameworkError,
    clientErrorHandler: handleClientError,
    // TRUST_PROXY: `request.ip` is the client behind the proxies the operator named, for the rate
    // limits and the audit lines; X-Forwarded-For is not read otherwise.
    trustProxy: fastifyTrustProxy(config.trustProxy),
    // One line per request (the onResponse hook below) instead of Fastify's two: the second cost
    // 20-30 µs of a warm call. Through a LogController: the top-level disableRequestLogging
    // option is deprecated since Fastify 5.12 (FSTDEP023, a warning on every start).
    logController: new LogController({ disableRequestLogging: true }),
  })

  // Bodies are JSON only: a text/plain body is refused with a clear message rather than parsed as a string.
  app.removeContentTypeParser('text/plain')
  registerErrorHandling(app)
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
  // The handler and everything it awaits run with the client's address at hand, for the audit
  // lines (http/logging.ts). preHandler, not onRequest: a parsed body resumes in the socket's
  // async context, and Fastify calls the handler from this hook's `done`. The address is taken
  // now, while the connection is surely open (a revocation may log after the answer), and made
  // readable (client-address.ts) only when an audit line is written.
  app.addHook('preHandler', (request, _reply, done) => {
    requestClient.run({ ip: request.ip }, done)
  })
  app.addHook('onResponse', async (request, reply) => {
    request.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
  })
  app.addHook('onClose', async () => {
    await relay.close()
  })
  // Graceful shutdown: app.close() stops listening and closes idle keep-alive connections once;
  // a connection whose request is still in flight would stay open after its answer (and hold the
  // close up) unless that answer says Connection: close.
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })
  registerHttpMetrics(app, deps.metrics ?? new Registry())

  const identity = createIdentity({ apiKeys: config.apiKeys, adminKeys: config.adminKeys, userSecret: config.userSecret, now: deps.now ?? Date.now })

  await app.register(toolRoutes, { relay, identity })
  await app.register(resetRoute, { relay, identity })
  await app.register(identityRoute, { relay, identity })
  // Without RELAY_ADMIN_KEYS the admin routes do not exist: 404, whatever the key.
  if (config.adminKeys.length > 0) await app.register(adminRoutes, { relay, identity })
  await app.register(signInRoutes, {
    relay,
    publicBaseUrl: config.publicBaseUrl,
    rateLimit: deps.rateLimit ?? { max: 30, timeWindowMs: 60_000 },
    signInKeys: deps.signInKeys,
  })
  await app.register(fileRoutes, { relay, rateLimit: deps.filesRateLimit ?? { max: 120, timeWindowMs: 60_000 } })
  await app.register(healthRoutes, { relay })
  await app.register(openApiRoute, { document: createOpenApiDocument(config.toolsBaseUrl) })

  return app
}
