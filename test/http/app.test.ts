import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { RelayError, type RelayErrorCode } from '../../src/errors.ts'
import { STATUS, toRelayError } from '../../src/http/error-handler.ts'
import { ACME_KEY, bearer, makeApp } from './helpers.ts'

describe('health', () => {
  it('GET /healthz is 200 {status: ok}', async () => {
    const { app } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/healthz' })
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({ status: 'ok' })
    await app.close()
  })

  it('GET /readyz is 200 when the relay is ready, 503 with the error shape when not', async () => {
    const cases: Array<[string, () => Promise<void>, number, string | undefined]> = [
      ['ready', async () => {}, 200, undefined],
      ['store down', async () => Promise.reject(new RelayError('STORE_UNAVAILABLE', 'the store does not answer (redis)')), 503, 'the store does not answer (redis)'],
      ['anything else', async () => Promise.reject(new Error('ECONNREFUSED 10.1.2.3')), 503, 'the store does not answer'],
    ]
    for (const [name, checkReady, status, message] of cases) {
      const { app } = await makeApp({ relay: { checkReady } })
      const response = await app.inject({ method: 'GET', url: '/readyz' })
      expect(response.statusCode, name).toBe(status)
      if (message) expect(response.json()).toEqual({ error: { code: 'STORE_UNAVAILABLE', message } })
      else expect(response.json()).toEqual({ status: 'ready' })
      await app.close()
    }
  })
})

describe('metrics', () => {
  it('GET /metrics serves Prometheus text with mcp_relay_ request timings by route pattern', async () => {
    const registry = new Registry()
    const { app } = await makeApp({ deps: { metrics: registry } })
    await app.inject({ method: 'POST', url: '/tools/list-tools', headers: bearer(ACME_KEY), payload: { user_id: 'u1' } })
    await app.inject({ method: 'GET', url: '/oauth/start/secret-ticket' })
    const response = await app.inject({ method: 'GET', url: '/metrics' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^text\/plain/)
    expect(response.body).toMatch(/mcp_relay_http_request_duration_seconds_count\{method="POST",route="\/tools\/list-tools",status_code="200"\} 1/)
    expect(response.body).toContain('route="/oauth/start/:ticket"')
    expect(response.body).not.toContain('secret-ticket')
    await app.close()
    // A second app on the same registry (tests, restarts in-process) reuses the metric.
    const { app: again } = await makeApp({ deps: { metrics: registry } })
    await again.close()
  })
})

describe('errors outside the routes', () => {
  it('an unknown route is 404 NOT_FOUND in the JSON error shape', async () => {
    const { app } = await makeApp()
    for (const [method, url] of [
      ['GET', '/nope'],
      ['GET', '/tools/auth-status'],
      ['DELETE', '/oauth/reset'],
    ] as const) {
      const response = await app.inject({ method, url })
      expect(response.statusCode).toBe(404)
      expect(response.json().error.code).toBe('NOT_FOUND')
    }
    await app.close()
  })

  it('a malformed URL is 400 INVALID_INPUT in the JSON error shape', async () => {
    const { app } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/tools/%E0%A4%A' })
    expect(response.statusCode).toBe(400)
    expect(response.json()).toEqual({ error: { code: 'INVALID_INPUT', message: 'the URL is not valid' } })
    await app.close()
  })

  it('STATUS maps every code', () => {
    const expected: Record<RelayErrorCode, number> = {
      INVALID_INPUT: 400,
      UNAUTHORIZED: 401,
      FORBIDDEN: 403,
      UNKNOWN_SERVER: 400,
      NOT_FOUND: 404,
      PAYLOAD_TOO_LARGE: 413,
      RATE_LIMITED: 429,
      STORE_UNAVAILABLE: 503,
      INTERNAL: 500,
    }
    expect(STATUS).toEqual(expected)
  })

  it('toRelayError keeps RelayErrors, words Fastify errors, hides the rest', () => {
    const relayError = new RelayError('UNKNOWN_SERVER', 'x')
    expect(toRelayError(relayError, 'r1')).toBe(relayError)
    const tooLarge = toRelayError(Object.assign(new Error('Request body is too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }), 'r1')
    expect([tooLarge.code, tooLarge.message]).toEqual(['PAYLOAD_TOO_LARGE', 'the body must be at most 1 MiB'])
    const someClientError = toRelayError(Object.assign(new Error('detail /secret/path'), { statusCode: 422 }), 'r1')
    expect([someClientError.code, someClientError.message]).toEqual(['INVALID_INPUT', 'the request is not valid'])
    const bug = new Error('db password is hunter2')
    const internal = toRelayError(bug, 'r1')
    expect(internal.code).toBe('INTERNAL')
    expect(internal.message).not.toContain('hunter2')
    expect(internal.cause).toBe(bug)
    expect(toRelayError(undefined, 'r1').code).toBe('INTERNAL')
  })
})

describe('close', () => {
  it('app.close() closes the relay once', async () => {
    const { app, closedCount } = await makeApp()
    await app.ready()
    await app.close()
    expect(closedCount()).toBe(1)
  })

  it('serves on a real port; a request in flight when close() starts still completes', async () => {
    let release!: () => void
    const slow = new Promise<void>((resolve) => (release = resolve))
    let entered!: () => void
    const handlerEntered = new Promise<void>((resolve) => (entered = resolve))
    const { app } = await makeApp({
      relay: {
        listTools: async () => {
          entered()
          await slow
          return { tools: [], auth_required: [], errors: [], servers: [], usage: '' }
        },
      },
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as { port: number }
    const inFlight = fetch(`http://127.0.0.1:${port}/tools/list-tools`, {
      method: 'POST',
      headers: { ...bearer(ACME_KEY), 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: 'u1' }),
    })
    // Close only once the request is inside the handler (a fixed sleep was not enough under load).
    await Promise.race([handlerEntered, inFlight.then((response) => Promise.reject(new Error(`answered ${response.status} before the handler ran`)))])
    const closing = app.close()
    release()
    // The request that was in flight still completes.
    expect((await inFlight).status).toBe(200)
    await closing
  })
})
