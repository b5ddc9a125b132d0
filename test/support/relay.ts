import { randomBytes } from 'node:crypto'
import type { LookupFunction } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { buildApp } from '../../src/app.ts'
import { loadConfig } from '../../src/config/load-config.ts'
import { loggerOptions } from '../../src/http/logging.ts'
import { createPrometheusMetrics } from '../../src/http/metrics.ts'
import type { RelayDeps } from '../../src/relay/deps.ts'
import { createRelay } from '../../src/relay/create-relay.ts'
import { freePort } from './free-port.ts'

export interface TestRelay {
  url: string
  apiKey: string
  app: FastifyInstance
  deps: RelayDeps
  /** The confirmation form's CSRF keys this relay was given (createRelay). */
  signInKeys: readonly Buffer[]
  /** What GET /metrics serves: the relay's metrics are wired as in main.ts. */
  registry: Registry
  /** POSTs JSON to a relay route with the API key (or the one given); returns status and body. */
  post(path: string, body: unknown, options?: { apiKey?: string | null }): Promise<{ status: number; body: any }>
  close(): Promise<void>
}

export const TEST_API_KEY = 'test-key-0123456789abcdef'
export const OTHER_TENANT_KEY = 'other-key-0123456789abcdef'

/**
 * The relay in this process on a real port, over the store `STORE_URL` names (memory:// by
 * default), with `servers` as MCP_SERVERS_JSON. `env` adds or overrides variables.
 */
export async function startRelay(options: {
  servers: object[]
  /** The servers file's top-level identity_provider (grant_type "enterprise"). */
  identityProvider?: object
  env?: Record<string, string>
  now?: () => number
  /** Where the relay's log lines go, at env LOG_LEVEL, redacted as in main.ts; default no logging. */
  logStream?: pino.DestinationStream
  /** Per-IP limit on /oauth/start and /oauth/callback; default high enough never to matter. */
  rateLimit?: { max: number; timeWindowMs: number }
  /** The store's key prefix; default one of this relay's own. Two relays given the same one are replicas. */
  storeKeyPrefix?: string
  /** How the relay resolves host names (test/support/made-up-names.ts); default the OS resolver. */
  lookup?: LookupFunction
}): Promise<TestRelay> {
  const port = await freePort()
  const config = loadConfig({
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    RELAY_API_KEYS: `${TEST_API_KEY},other:${OTHER_TENANT_KEY}`,
    MCP_SERVERS_JSON: JSON.stringify({ servers: options.servers, ...(options.identityProvider ? { identity_provider: options.identityProvider } : {}) }),
    STORE_URL: 'memory://',
    LOG_LEVEL: 'silent',
    ...options.env,
  })
  const registry = new Registry()
  // As main.ts does: one pino logger for the app, a child of it for the relay.
  const logger = options.logStream && pino(loggerOptions({}, config.logLevel) as pino.LoggerOptions, options.logStream)
  const { relay, deps, signInKeys } = await createRelay(config, {
    logger: logger ? logger.child({ component: 'relay' }) : silentLogger,
    metrics: createPrometheusMetrics(registry),
    storeKeyPrefix: options.storeKeyPrefix ?? `t${randomBytes(6).toString('hex')}`,
    ...(options.now ? { now: options.now } : {}),
    ...(options.lookup ? { lookup: options.lookup } : {}),
  })
  const app = await buildApp({
    config,
    relay,
    signInKeys,
    ...(logger ? { loggerInstance: logger } : { logger: false }),
    metrics: registry,
    rateLimit: options.rateLimit ?? { max: 10_000, timeWindowMs: 60_000 },
  })
  // config.port: `env` may name the port (a test that must know the callback URL before the relay starts).
  // config.host: 127.0.0.1 unless `env` names another (HOST=:: listens on IPv6 too, reached at [::1]).
  await app.listen({ port: config.port, host: config.host })
  const url = config.host.includes(':') ? `http://[::1]:${config.port}` : `http://127.0.0.1:${config.port}`
  return {
    url,
    apiKey: TEST_API_KEY,
    app,
    deps,
    signInKeys,
    registry,
    async post(path, body, { apiKey = TEST_API_KEY } = {}) {
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (apiKey !== null) headers.authorization = `Bearer ${apiKey}`
      const response = await fetch(`${url}${path}`, {
        method: 'POST',
        headers,
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(20_000),
      })
      const text = await response.text()
      let parsed: unknown = text
      try {
        parsed = JSON.parse(text)
      } catch {
        // not JSON: the test sees the raw text
      }
      return { status: response.status, body: parsed }
    },
    close: () => app.close(),
  }
}

const silentLogger = { info() {}, warn() {}, error() {}, debug() {} }
