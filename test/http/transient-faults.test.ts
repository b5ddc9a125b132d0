// The relay's own transient faults on the three tool routes (DESIGN.md §4): Dify turns a 429 or 5xx
// into "Reached maximum retries (0) for URL …" and drops the body, so there STORE_UNAVAILABLE and
// RATE_LIMITED answer HTTP 200 `{ ok: false, error_code, retry_after_seconds, message }`; metrics
// and logs still count them as the errors they are; every other route answers as before.
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RelayError } from '../../src/errors.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { POSTGRES_PORT, postgresUrl } from '../support/services.ts'
import { startTcpProxy } from '../store/tcp-proxy.ts'
import { ACME_KEY, bearer, makeApp } from './helpers.ts'

const TOOL_ROUTES = ['/tools/auth-status', '/tools/list-tools', '/tools/call-tool'] as const
const BODIES: Record<string, Record<string, unknown>> = {
  '/tools/auth-status': { user_id: 'u1' },
  '/tools/list-tools': { user_id: 'u1' },
  '/tools/call-tool': { user_id: 'u1', tool_ref: 'docs::search', input: {} },
  '/oauth/reset': { user_id: 'u1' },
}

/** A writable that keeps every JSON log line. */
function logCollector() {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line))
      callback()
    },
  })
  return { lines, stream }
}

/** `mcp_relay_requests_total` by route and outcome, from GET /metrics. */
function requestCounts(metricsText: string): Map<string, number> {
  const counts = new Map<string, number>()
  for (const line of metricsText.split('\n')) {
    const match = /^mcp_relay_requests_total\{route="([^"]+)",outcome="([^"]+)"\} (\S+)$/.exec(line)
    if (match) counts.set(`${match[1]} ${match[2]}`, Number(match[3]))
  }
  return counts
}

describe('a relay-side transient fault thrown on each route (the recording relay)', () => {
  const faults: Array<[string, RelayError, number, number, RegExp]> = [
    ['STORE_UNAVAILABLE', new RelayError('STORE_UNAVAILABLE', 'The store (redis) did not answer'), 503, 10, /cannot reach its store.*try again in about 10 seconds/],
    ['RATE_LIMITED', new RelayError('RATE_LIMITED', 'There were too many requests from this workspace; try again in 1 minute.'), 429, 60, /^There were too many requests from this workspace; try again in 1 minute\.$/],
  ]
  for (const [code, error, otherStatus, retrySeconds, message] of faults) {
    describe(code, () => {
      let app: FastifyInstance
      const logs = logCollector()
      beforeAll(async () => {
        const fail = async () => {
          throw error
        }
        ;({ app } = await makeApp({
          relay: { authStatus: fail, listTools: fail, callTool: fail, reset: fail },
          deps: { logger: { level: 'info', stream: logs.stream } },
        }))
      })
      afterAll(async () => {
        await app.close()
      })

      for (const route of TOOL_ROUTES) {
        it(`${route}: HTTP 200 { ok: false, error_code: ${code}, retry_after_seconds: ${retrySeconds}, message }, logged and counted as ${code}`, async () => {
          const from = logs.lines.length
          const response = await app.inject({ method: 'POST', url: route, headers: bearer(ACME_KEY), payload: BODIES[route] })
          expect(response.statusCode).toBe(200)
          expect(response.headers['content-type']).toMatch(/^application\/json/)
          const body = response.json()
          expect(Object.keys(body).sort()).toEqual(['error_code', 'message', 'ok', 'retry_after_seconds'])
          expect(body).toMatchObject({ ok: false, error_code: code, retry_after_seconds: retrySeconds })
          expect(body.message).toMatch(message)

          // Logged as it would be on any other route: an error line for the store, a rejection for the limit.
          const failure = logs.lines.slice(from).find((line) => line.errorCode === code)
          expect(failure, JSON.stringify(logs.lines.slice(from))).toBeDefined()
          expect(failure).toMatchObject(code === 'STORE_UNAVAILABLE' ? { level: 50, msg: 'request failed' } : { level: 30, msg: 'request rejected' })

          const metrics = await app.inject({ method: 'GET', url: '/metrics' })
          expect(requestCounts(metrics.body).get(`${route} ${code}`)).toBeGreaterThanOrEqual(1)
        })
      }

      it(`/oauth/reset (not a tool route): HTTP ${otherStatus} as before`, async () => {
        const response = await app.inject({ method: 'POST', url: '/oauth/reset', headers: bearer(ACME_KEY), payload: BODIES['/oauth/reset'] })
        expect(response.statusCode).toBe(otherStatus)
        expect(response.json()).toEqual({ error: { code, message: error.message } })
      })
    })
  }

  it('request errors on the tool routes keep their 4xx: a missing key, a bad field, an unknown server', async () => {
    const { app } = await makeApp()
    expect((await app.inject({ method: 'POST', url: '/tools/call-tool', payload: BODIES['/tools/call-tool'] })).statusCode).toBe(401)
    expect((await app.inject({ method: 'POST', url: '/tools/call-tool', headers: bearer(ACME_KEY), payload: { user_id: 'u1' } })).statusCode).toBe(400)
    const unknown = await app.inject({ method: 'POST', url: '/tools/list-tools', headers: bearer(ACME_KEY), payload: { user_id: 'u1', server_ids: 'nope' } })
    expect(unknown.statusCode).toBe(400)
    expect(unknown.json().error.code).toBe('UNKNOWN_SERVER')
    await app.close()
  })

  it('an unexpected error on a tool route is still a 500', async () => {
    const { app } = await makeApp({ relay: { callTool: () => Promise.reject(new Error('boom')) } })
    const response = await app.inject({ method: 'POST', url: '/tools/call-tool', headers: bearer(ACME_KEY), payload: BODIES['/tools/call-tool'] })
    expect(response.statusCode).toBe(500)
    expect(response.json().error.code).toBe('INTERNAL')
    await app.close()
  })

  it('/readyz still answers 503 when the store does not answer', async () => {
    const { app } = await makeApp({ relay: { checkReady: () => Promise.reject(new RelayError('STORE_UNAVAILABLE', 'The store (redis) did not answer')) } })
    const response = await app.inject({ method: 'GET', url: '/readyz' })
    expect(response.statusCode).toBe(503)
    expect(response.json().error.code).toBe('STORE_UNAVAILABLE')
    await app.close()
  })
})

describe('a real store outage: PostgreSQL behind a proxy that goes away and comes back', () => {
  let as: AuthorizationServer
  let docs: McpUpstream
  let proxy: Awaited<ReturnType<typeof startTcpProxy>>
  let relay: TestRelay
  const logs = logCollector()

  beforeAll(async () => {
    ;[as, proxy] = await Promise.all([startAuthorizationServer(), startTcpProxy(POSTGRES_PORT)])
    docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
    relay = await startRelay({
      servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
      env: {
        OAUTH_TRUSTED_HOSTS: new URL(as.url).host,
        STORE_URL: postgresUrl({ port: proxy.port }),
        RELAY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
        LOG_LEVEL: 'info',
      },
      logStream: logs.stream,
    })
  }, 30_000)

  afterAll(async () => {
    await relay?.close()
    await proxy?.stop()
    await Promise.all([docs?.close(), as?.close()])
  })

  const post = (path: string) => relay.post(path, { ...BODIES[path], ...(path === '/tools/call-tool' ? { tool_ref: 'docs::whoami' } : {}) })

  it('answers 200 ok: false STORE_UNAVAILABLE on each tool route and 503 on /readyz and reset while it is gone, and serves again once it is back', async () => {
    // Working before: the user needs to sign in (which stores a login ticket).
    expect((await post('/tools/call-tool')).body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth' })

    await proxy.stop()
    const from = logs.lines.length
    for (const route of TOOL_ROUTES) {
      const started = Date.now()
      const answer = await post(route)
      expect(answer.status, route).toBe(200)
      expect(answer.body, route).toMatchObject({ ok: false, error_code: 'STORE_UNAVAILABLE', retry_after_seconds: 10 })
      expect(answer.body.message).toMatch(/try again in about 10 seconds/)
      expect(JSON.stringify(answer.body)).not.toMatch(/postgres|127\.0\.0\.1|5432/)
      // Bounded by the store timeout (2 s), well inside Dify's 60 s tool timeout.
      expect(Date.now() - started, route).toBeLessThan(10_000)
    }
    const reset = await post('/oauth/reset')
    expect(reset.status).toBe(503)
    expect(reset.body.error.code).toBe('STORE_UNAVAILABLE')
    const ready = await fetch(`${relay.url}/readyz`, { signal: AbortSignal.timeout(10_000) })
    expect(ready.status).toBe(503)

    // Counted and logged as the error it is.
    const metrics = requestCounts(await (await fetch(`${relay.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text())
    for (const route of TOOL_ROUTES) expect(metrics.get(`${route} STORE_UNAVAILABLE`), route).toBeGreaterThanOrEqual(1)
    const failed = logs.lines.slice(from).filter((line) => line.msg === 'request failed' && line.errorCode === 'STORE_UNAVAILABLE')
    expect(failed.map((line) => line.level)).toEqual(Array(failed.length).fill(50))
    expect(failed.length).toBeGreaterThanOrEqual(TOOL_ROUTES.length + 1)

    await proxy.start()
    const deadline = Date.now() + 15_000
    while ((await fetch(`${relay.url}/readyz`, { signal: AbortSignal.timeout(10_000) })).status !== 200) {
      expect(Date.now(), '/readyz to answer 200 again within 15 s').toBeLessThan(deadline)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect((await post('/tools/call-tool')).body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth' })
  }, 60_000)
})
