import { createHmac } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { isRelayError } from '../../src/errors.ts'
import { createIdentity, signUserId } from '../../src/http/identity.ts'
import { ACME_KEY, GLOBEX_KEY, USER_SECRET, bearer, makeApp } from './helpers.ts'

const NOW = Date.UTC(2026, 10, 26, 12, 0, 0)
const apiKeys = [
  { tenant: 'acme', key: ACME_KEY },
  { tenant: 'globex', key: GLOBEX_KEY },
]

function unauthorized(run: () => unknown): string {
  try {
    run()
  } catch (error) {
    expect(isRelayError(error, 'UNAUTHORIZED')).toBe(true)
    return (error as Error).message
  }
  throw new Error('expected UNAUTHORIZED')
}

describe('createIdentity: API keys', () => {
  const identity = createIdentity({ apiKeys, userSecret: undefined, now: () => NOW })
  it('maps each key to its tenant', () => {
    expect(identity.tenantOf(`Bearer ${ACME_KEY}`)).toBe('acme')
    expect(identity.tenantOf(`Bearer ${GLOBEX_KEY}`)).toBe('globex')
    expect(identity.tenantOf(`bearer   ${GLOBEX_KEY} `)).toBe('globex')
  })
  // Dify's API-key credential form: its prefixes Bearer, Basic and Custom send `Bearer <key>`,
  // `Basic <key>` (the key as it is, not base64) and the key alone.
  for (const [name, header] of [
    [`Basic <key> (Dify's "Basic" prefix)`, `Basic ${ACME_KEY}`],
    ['basic <key>, any case, extra spaces', `bAsIc \t ${ACME_KEY}  `],
    [`the bare key (Dify's "Custom" prefix)`, ACME_KEY],
    ['the bare key with spaces around', `  ${ACME_KEY} `],
  ] as const) {
    it(`accepts ${name}`, () => {
      expect(identity.tenantOf(header)).toBe('acme')
    })
  }
  const base64 = (text: string) => Buffer.from(text).toString('base64')
  for (const [name, header, message] of [
    ['missing', undefined, /required/],
    ['empty', '', /required/],
    ['"Bearer" alone', 'Bearer', /required/],
    ['"Basic" alone', 'Basic ', /required/],
    ['another scheme', `Token ${ACME_KEY}`, /required/],
    ['a prefix of a key', `Bearer ${ACME_KEY.slice(0, 10)}`, /not valid/],
    ['a key plus more', `Bearer ${ACME_KEY}x`, /not valid/],
    ['two tokens', `Bearer ${ACME_KEY} ${GLOBEX_KEY}`, /required/],
    ['the tenant:key form', `Bearer acme:${ACME_KEY}`, /not valid/],
    ['HTTP Basic credentials, base64(tenant:key)', `Basic ${base64(`acme:${ACME_KEY}`)}`, /not valid/],
    ['HTTP Basic credentials, base64(:key)', `Basic ${base64(`:${ACME_KEY}`)}`, /not valid/],
    ['HTTP Basic credentials, base64(key:)', `Basic ${base64(`${ACME_KEY}:`)}`, /not valid/],
    ['the key base64-encoded', `Basic ${base64(ACME_KEY)}`, /not valid/],
    ['the key base64-encoded, bare', base64(ACME_KEY), /not valid/],
    ['a bare prefix of a key', ACME_KEY.slice(0, -1), /not valid/],
    ['a bare key and more', `${ACME_KEY}x`, /not valid/],
  ] as const) {
    it(`refuses ${name}`, () => {
      const refusal = unauthorized(() => identity.tenantOf(header))
      expect(refusal).toMatch(message)
      expect(refusal).not.toContain(ACME_KEY)
    })
  }
  it('without a user secret, user_id is the user', () => {
    expect(identity.userIdOf('a.b.c')).toBe('a.b.c')
  })
})

describe('signed user ids (RELAY_USER_SECRET)', () => {
  const identity = createIdentity({ apiKeys, userSecret: USER_SECRET, now: () => NOW })

  it('signUserId produces <id>.<expiry>.<base64url HMAC-SHA256(secret, "<id>.<expiry>")>', () => {
    const signed = signUserId(USER_SECRET, 'user-1', 600, NOW)
    const expiry = NOW / 1000 + 600
    const mac = createHmac('sha256', USER_SECRET).update(`user-1.${expiry}`).digest('base64url')
    expect(signed).toBe(`user-1.${expiry}.${mac}`)
  })

  it('a valid signed id yields the id (dots in the id are fine)', () => {
    expect(identity.userIdOf(signUserId(USER_SECRET, 'user-1', 600, NOW))).toBe('user-1')
    expect(identity.userIdOf(signUserId(USER_SECRET, 'first.last@example.com', 600, NOW))).toBe('first.last@example.com')
  })

  const valid = signUserId(USER_SECRET, 'user-1', 600, NOW)
  const [, expiry, signature] = valid.split('.') as [string, string, string]
  const cases: Array<[string, string, RegExp]> = [
    ['an unsigned id', 'user-1', /must be a signed user id/],
    ['an expired id', signUserId(USER_SECRET, 'user-1', 600, NOW - 601_000), /has expired/],
    ['an id expiring right now', signUserId(USER_SECRET, 'user-1', 0, NOW), /has expired/],
    ['another user with the same signature', `user-2.${expiry}.${signature}`, /signature is not valid/],
    ['a later expiry with the same signature', `user-1.${Number(expiry) + 3600}.${signature}`, /signature is not valid/],
    ['a tampered signature', `user-1.${expiry}.${signature.slice(0, -2)}AA`, /signature is not valid/],
    ['a truncated signature', `user-1.${expiry}.${signature.slice(0, 20)}`, /signature is not valid/],
    ['a signature by another secret', signUserId('another-secret-that-is-32-characters-long', 'user-1', 600, NOW), /signature is not valid/],
    ['a non-numeric expiry', `user-1.soon.${signature}`, /must be a signed user id/],
    ['an empty id', `.${expiry}.${signature}`, /must be a signed user id/],
  ]
  for (const [name, userId, message] of cases) {
    it(`refuses ${name}, without echoing it`, () => {
      const text = unauthorized(() => identity.userIdOf(userId))
      expect(text).toMatch(message)
      expect(text).toMatch(/^user_id: /)
      expect(text).not.toContain(signature)
      expect(text).not.toContain('user-')
    })
  }
})

describe('signed user ids through the routes', () => {
  const now = () => NOW
  const environment = { RELAY_USER_SECRET: USER_SECRET }

  it('valid: the relay gets the verified id', async () => {
    const { app, calls } = await makeApp({ environment, deps: { now } })
    const response = await app.inject({
      method: 'POST',
      url: '/tools/list-tools',
      headers: bearer(ACME_KEY),
      payload: { user_id: signUserId(USER_SECRET, 'user-1', 600, NOW) },
    })
    expect(response.statusCode).toBe(200)
    expect(calls[0]!.caller).toEqual({ tenant: 'acme', userId: 'user-1' })
    await app.close()
  })

  for (const [name, userId] of [
    ['expired', signUserId(USER_SECRET, 'user-1', 600, NOW - 3_600_000)],
    ['tampered', signUserId(USER_SECRET, 'user-1', 600, NOW).replace('user-1', 'user-2')],
    ['unsigned', 'user-1'],
  ]) {
    for (const url of ['/tools/auth-status', '/tools/list-tools', '/tools/call-tool', '/oauth/reset']) {
      it(`${url}: ${name} → 401 UNAUTHORIZED naming user_id`, async () => {
        const { app, calls } = await makeApp({ environment, deps: { now } })
        const response = await app.inject({ method: 'POST', url, headers: bearer(ACME_KEY), payload: { user_id: userId, tool_ref: 'docs::x' } })
        expect(response.statusCode).toBe(401)
        expect(response.headers['www-authenticate']).toBe('Bearer')
        const { error } = response.json()
        expect(error.code).toBe('UNAUTHORIZED')
        expect(error.message).toMatch(/^user_id: /)
        expect(error.message).not.toContain(userId)
        expect(calls).toEqual([])
        await app.close()
      })
    }
  }
})
