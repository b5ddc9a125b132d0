import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { logDestination, loggablePath, loggerOptions, redactLine } from '../../src/http/logging.ts'
import { ACME_KEY, bearer, makeApp, signUserIdForTest } from './helpers.ts'

function captureLogs() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      callback()
    },
  })
  return { lines, logger: { level: 'trace', stream } }
}

const SECRETS = {
  code: 'AUTHCODE-7f3a9c',
  state: 'STATE-91be22',
  ticket: 'TICKET-5d0c7e',
  token: 'ACCESS-TOKEN-c0ffee',
  refresh: 'REFRESH-TOKEN-beef',
  verifier: 'VERIFIER-abad1dea',
  clientSecret: 'CLIENT-SECRET-f00d',
  browserCookie: 'BROWSERCOOKIE0123456789abcdefghijklmnopqrst',
  csrf: 'CSRF-TOKEN-5ca1ab1e',
  confirmCode: 'ABCDE-12345',
}

describe('logs', () => {
  it('carry no API key, code, state, ticket or token, and every request line has a reqId', async () => {
    const { lines, logger } = captureLogs()
    const { app } = await makeApp({
      deps: { logger },
      relay: {
        completeSignIn: async () => {
          // A failing exchange whose error carries secrets, as openid-client's do: the callback
          // parameters as a non-Error cause, a response body in a field, a wrapped Error cause.
          const inner = Object.assign(new Error('token endpoint answered 400'), {
            cause: new URLSearchParams({ code: SECRETS.code, state: SECRETS.state }),
            body: { access_token: SECRETS.token, refresh_token: SECRETS.refresh, client_secret: SECRETS.clientSecret },
          })
          throw Object.assign(new Error('token exchange failed', { cause: inner }), {
            code: 'OAUTH_INVALID_RESPONSE',
            parameters: new URLSearchParams({ code: SECRETS.code }),
          })
        },
      },
    })
    await app.inject({ method: 'POST', url: '/tools/auth-status', headers: { ...bearer(ACME_KEY), cookie: 'session=COOKIE-1' }, payload: { user_id: 'u1' } })
    await app.inject({ method: 'POST', url: '/tools/auth-status', headers: bearer('WRONG-KEY-0123456789abc'), payload: { user_id: 'u1' } })
    await app.inject({ method: 'GET', url: `/oauth/callback?code=${SECRETS.code}&state=${SECRETS.state}&iss=https%3A%2F%2Fas.example` })
    await app.inject({ method: 'GET', url: `/oauth/start/${SECRETS.ticket}` })
    // The confirmation page and its form, with a browser cookie and a CSRF token; a confirmation code.
    const browser = { cookie: `__Host-mcp_relay_browser=${SECRETS.browserCookie}` }
    await app.inject({ method: 'GET', url: '/oauth/start/good', headers: browser })
    await app.inject({ method: 'POST', url: '/oauth/start/good', headers: { ...browser, 'content-type': 'application/x-www-form-urlencoded' }, payload: `csrf=${SECRETS.csrf}` })
    const fresh = await app.inject({ method: 'GET', url: '/oauth/start/good' })
    const freshCookie = /mcp_relay_browser=([^;]+)/.exec(String(fresh.headers['set-cookie']))![1]!
    const freshCsrf = /name="csrf" value="([^"]+)"/.exec(fresh.body)![1]!
    await app.inject({ method: 'GET', url: `/oauth/callback?code=${SECRETS.code}&state=${SECRETS.state}`, headers: browser })
    await app.inject({ method: 'POST', url: '/tools/auth-status', headers: bearer(ACME_KEY), payload: { user_id: 'u1', confirm_code: SECRETS.confirmCode } })
    app.log.info(
      { access_token: SECRETS.token, flow: { code_verifier: SECRETS.verifier, state: SECRETS.state, nested: { refresh_token: SECRETS.refresh } } },
      'direct log with secret fields',
    )
    await app.close()

    const text = lines.join('\n')
    expect(lines.length).toBeGreaterThan(4)
    for (const secret of [ACME_KEY, 'WRONG-KEY-0123456789abc', 'COOKIE-1', freshCookie, freshCsrf, ...Object.values(SECRETS)]) {
      expect(text, secret).not.toContain(secret)
    }
    const records = lines.map((line) => JSON.parse(line))
    const requestRecords = records.filter((record) => record.req || record.res || /request/.test(record.msg))
    expect(requestRecords.length).toBeGreaterThan(6)
    for (const record of requestRecords) expect(record.reqId, record.msg).toBeTruthy()
    // The OAuth URLs are logged by path only.
    const urls = records.filter((record) => record.req).map((record) => record.req.url)
    expect(urls).toContain('/oauth/callback')
    expect(urls).toContain('/oauth/start/:ticket')
    // The failed exchange is logged, with the error's code kept apart from OAuth's `code`.
    const failed = records.find((record) => record.msg === 'request failed')
    expect(failed.err).toMatchObject({ message: 'token exchange failed', errorCode: 'OAUTH_INVALID_RESPONSE' })
    expect(failed.err.cause).toMatchObject({ message: 'token endpoint answered 400', cause: '[URLSearchParams]' })
    // The tenant is on the lines of an API-key request.
    expect(records.some((record) => record.tenant === 'acme')).toBe(true)
  })

  it('redact the same through a shared pino instance built from loggerOptions() (as main.ts does)', async () => {
    const { lines, logger } = captureLogs()
    const instance = pino(loggerOptions({}, 'trace') as pino.LoggerOptions, logger.stream)
    const { app } = await makeApp({ deps: { logger: undefined, loggerInstance: instance } })
    await app.inject({ method: 'POST', url: '/tools/list-tools', headers: bearer(ACME_KEY), payload: { user_id: 'u1' } })
    await app.inject({ method: 'GET', url: `/oauth/callback?code=${SECRETS.code}&state=${SECRETS.state}` })
    await app.inject({ method: 'GET', url: `/oauth/start/${SECRETS.ticket}` })
    instance.info({ tokens: { access_token: SECRETS.token } }, 'direct')
    await app.close()
    const text = lines.join('\n')
    for (const secret of [ACME_KEY, SECRETS.code, SECRETS.state, SECRETS.ticket, SECRETS.token]) expect(text, secret).not.toContain(secret)
    const records = lines.map((line) => JSON.parse(line))
    expect(records.filter((record) => record.req).map((record) => record.req.url)).toEqual(['/tools/list-tools', '/oauth/callback', '/oauth/start/:ticket'])
    for (const record of records.filter((record) => record.req || record.res)) expect(record.reqId).toBeTruthy()
  })

  it('keep a plain X-Request-Id from the caller and replace an odd one', async () => {
    const { app } = await makeApp()
    const kept = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'dify-run-42' } })
    expect(kept.headers['x-request-id']).toBe('dify-run-42')
    const replaced = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b\u00e9{}' } })
    expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    await app.close()
  })

  it('the signed user id mode does not log the signed value', async () => {
    const { lines, logger } = captureLogs()
    const signed = signUserIdForTest('user-1')
    const { app } = await makeApp({ environment: { RELAY_USER_SECRET: 'x'.repeat(32) }, deps: { logger } })
    await app.inject({ method: 'POST', url: '/tools/list-tools', headers: bearer(ACME_KEY), payload: { user_id: signed } })
    await app.close()
    expect(lines.join('\n')).not.toContain(signed.split('.')[2])
  })

  it('loggablePath logs a file link as /files/:id: its id fetches the file', () => {
    expect(loggablePath('/files/3q2-abcDEF_0123456789abcdefghijklmnopqrstu')).toBe('/files/:id')
    expect(loggablePath('/files/x?y=1')).toBe('/files/:id')
  })

  it('loggablePath drops the query and the ticket of OAuth routes only', () => {
    expect(loggablePath('/oauth/callback?code=a&state=b')).toBe('/oauth/callback')
    expect(loggablePath('/oauth/start/abc?x=1')).toBe('/oauth/start/:ticket')
    expect(loggablePath('/oauth/reset')).toBe('/oauth/reset')
    expect(loggablePath('/tools/list-tools')).toBe('/tools/list-tools')
  })
})

describe('redactLine', () => {
  it('blanks secret fields at the top level and two levels down, in objects and arrays', () => {
    const line = JSON.stringify({
      level: 30,
      access_token: 'AT-1',
      flow: { state: 'ST-1', nested: { code_verifier: 'CV-1' } },
      list: [{ refresh_token: 'RT-1' }],
      req: { headers: { authorization: 'Bearer K-1', cookie: 'c=C-1' } },
      res: { headers: { 'set-cookie': 'C-2' } },
      msg: 'm',
    })
    const redacted = JSON.parse(redactLine(`${line}\n`))
    expect(redacted).toEqual({
      level: 30,
      access_token: '[redacted]',
      flow: { state: '[redacted]', nested: { code_verifier: '[redacted]' } },
      list: [{ refresh_token: '[redacted]' }],
      req: { headers: { authorization: '[redacted]', cookie: '[redacted]' } },
      res: { headers: { 'set-cookie': '[redacted]' } },
      msg: 'm',
    })
    expect(redactLine(`${line}\n`).endsWith('}\n')).toBe(true)
  })

  it('leaves a line without a secret field as it is, and a field three levels down (as pino redact did)', () => {
    const plain = '{"level":30,"reqId":"r1","res":{"statusCode":200},"msg":"request completed"}\n'
    expect(redactLine(plain)).toBe(plain)
    const deep = JSON.stringify({ a: { b: { c: { code: 'x' } } } })
    expect(redactLine(deep)).toBe(deep)
  })
})

describe('log destination', () => {
  it('is pino\'s own JSON when stdout is not a terminal', async () => {
    expect(await logDestination(false)).toBeUndefined()
    expect(await logDestination(undefined)).toBeUndefined()
  })

  it('is readable lines through pino-pretty on a terminal, still redacted', async () => {
    let written = ''
    const out = new Writable({
      write(chunk, _encoding, callback) {
        written += String(chunk)
        callback()
      },
    })
    const destination = await logDestination(true, out)
    expect(destination).toBeDefined()
    const logger = pino(loggerOptions({}, 'info') as pino.LoggerOptions, destination)
    logger.info({ serverId: 'docs', access_token: 'at-secret-123' }, 'refresh ok')
    const lines = written.split('\n').filter(Boolean)
    expect(lines[0]).toMatch(/INFO.*refresh ok/)
    expect(() => JSON.parse(lines[0]!)).toThrow()
    expect(written).toContain('docs')
    expect(written).toContain('[redacted]')
    expect(written).not.toContain('at-secret-123')
  })
})
