import { format } from 'node:util'
import { pino } from 'pino'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { buildApp } from './app.ts'
import { ConfigError, loadConfig } from './config/load-config.ts'
import { logDestination, loggerOptions } from './http/logging.ts'
import { createPrometheusMetrics } from './http/metrics.ts'
import { createRelay } from './relay/create-relay.ts'

/** How long in-flight requests get to finish after SIGTERM before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000

/** The composition root: read config, build the relay and the app, listen, shut down gracefully. */
async function main(): Promise<void> {
  let config
  try {
    config = loadConfig(process.env)
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`mcp-auth-relay: configuration error: ${error.message}\n`)
      process.exit(1)
    }
    throw error
  }

  const logger = pino(loggerOptions({}, config.logLevel) as pino.LoggerOptions, await logDestination(process.stdout.isTTY))
  // The MCP SDK reports with console.warn (a tool it leaves out of tools/list for an invalid
  // x-mcp-header declaration, SEP-2243, say): a log line like the relay's own, not bare stderr.
  const consoleLogger = logger.child({ component: 'console' })
  console.warn = (...args: unknown[]) => consoleLogger.warn(format(...args))
  // One registry for the app: HTTP timings, the relay parts' events, and Node's process metrics.
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'mcp_relay_' })
  const { relay, signInKeys } = await createRelay(config, { logger: logger.child({ component: 'relay' }), metrics: createPrometheusMetrics(registry) })
  const app = await buildApp({ config, relay, signInKeys, loggerInstance: logger, metrics: registry })

  if (config.generatedApiKey) {
    logger.warn(
      { generatedApiKey: config.generatedApiKey.key },
      'RELAY_API_KEYS is not set: generated an API key for this run (set RELAY_API_KEYS to keep one)',
    )
  }
  if (config.servers.size === 0) {
    logger.warn('no MCP servers configured: set MCP_SERVERS_FILE or MCP_SERVERS_JSON (or create ./mcp-servers.json)')
  } else {
    logger.info({ servers: [...config.servers.keys()], source: config.serversSource }, 'servers configured')
  }
  for (const warning of config.serversWarnings) logger.warn(warning)
  if (config.toolsBaseUrlWarning) logger.warn(config.toolsBaseUrlWarning)

  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down')
    const force = setTimeout(() => {
      logger.error('shutdown took too long, exiting')
      process.exit(1)
    }, SHUTDOWN_GRACE_MS)
    force.unref()
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))

  await app.listen({ port: config.port, host: config.host })
  logger.info({ publicBaseUrl: config.publicBaseUrl, store: config.storeUrl.split(':')[0] }, 'relay listening')
}

await main()
