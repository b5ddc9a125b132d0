// DESIGN.md §6, the confirmation form against a planted cookie: on https the browser cookie is
// `__Host-` (Path=/), which a sibling subdomain cannot set; the CSRF token is an HMAC under a key
// only the relay holds, over the ticket and the cookie; POST /oauth/start refuses a
// Sec-Fetch-Site other than same-origin or none. The attack: a page on a sibling subdomain plants
// a cookie value it knows, computes the token for it and auto-submits the form, so a victim's
// browser starts a sign-in they never confirmed.
import { createHash, createHmac } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_COOKIE, HOST_BROWSER_COOKIE } from '../../src/http/browser-binding.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { findConfirmationToken } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { REDIS_URL } from '../support/services.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { makeApp } from './helpers.ts'

const TICKET = 'good'
const KNOWN = 'k'.repeat(43)
/** The token as the relay computed it before: an HMAC keyed by the cookie value alone, which anyone knowing the cookie can compute. */
const tokenKeyedByCookie = (cookie: string, ticket: string) => createHmac('sha256', cookie).update(`csrf\n${ticket}`).digest('base64url')

type App = Awaited<ReturnType<typeof makeApp>>

async function post(app: App['app'], headers: Record<string, string>, csrf: string) {
  return app.inject({
    method: 'POST',
    url: `/oauth/start/${TICKET}`,
    headers: { ...headers, 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ csrf }).toString(),
  })
}

/** What the relay's own page gives a browser that sends `cookie` (or the fresh cookie it sets): the cookie value and the token. */
async function pageFor(app: App['app'], cookieName: string, cookie?: string): Promise<{ cookie: string; csrf: string }> {
  const page = await app.inject({ method: 'GET', url: `/oauth/start/${TICKET}`, headers: cookie ? { cookie: `${cookieName}=${cookie}` } : {} })
  expect(page.statusCode).toBe(200)
  const set = /=([A-Za-z0-9_-]{43});/.exec(String(page.headers['set-cookie'] ?? ''))?.[1]
  return { cookie: cookie ?? set!, csrf: findConfirmationToken(page.body)! }
}

describe('the sibling-subdomain attack on the confirmation form', () => {
  it.each([
    ['https relay: the cookie a sibling can plant (no prefix), the token computed from it, sent same-site', 'https', `${BROWSER_COOKIE}=${KNOWN}`, 'same-site'],
    ['https relay: the same from a browser that sends no Sec-Fetch-Site', 'https', `${BROWSER_COOKIE}=${KNOWN}`, undefined],
    ['https relay: the token computed for a __Host- cookie the attacker could not even plant', 'https', `${HOST_BROWSER_COOKIE}=${KNOWN}`, undefined],
    ['http relay: a planted cookie and the token computed from it, no Sec-Fetch-Site', 'http', `${BROWSER_COOKIE}=${KNOWN}`, undefined],
  ])('%s: refused, nothing used up', async (_case, scheme, cookie, site) => {
    const { app, calls } = await makeApp({ environment: { PUBLIC_BASE_URL: `${scheme}://relay.example.com` } })
    const response = await post(app, { cookie, ...(site ? { 'sec-fetch-site': site } : {}) }, tokenKeyedByCookie(KNOWN, TICKET))
    expect(response.statusCode).toBe(403)
    expect(response.headers.location).toBeUndefined()
    expect(calls).toEqual([{ method: 'startSignIn', request: { ticketId: TICKET, browser: { csrfValid: false } } }])
    await app.close()
  })

  it('http relay: a planted cookie with the genuine token the attacker fetched for it from the relay\'s page, posted same-site: refused by Sec-Fetch-Site', async () => {
    const { app, calls } = await makeApp({ environment: { PUBLIC_BASE_URL: 'http://relay.example.com' } })
    // The attacker's server opens the page with its known cookie and reads the token.
    const { csrf } = await pageFor(app, BROWSER_COOKIE, KNOWN)
    calls.length = 0
    const response = await post(app, { cookie: `${BROWSER_COOKIE}=${KNOWN}`, 'sec-fetch-site': 'same-site' }, csrf)
    expect(response.statusCode).toBe(403)
    expect(calls).toEqual([{ method: 'startSignIn', request: { ticketId: TICKET, browser: { csrfValid: false } } }])
    await app.close()
  })

  it('https relay: the relay reads only the __Host- cookie, so a planted plain cookie beside the real one changes nothing', async () => {
    const { app, calls } = await makeApp()
    const mine = await pageFor(app, HOST_BROWSER_COOKIE)
    calls.length = 0
    // The planted cookie comes first (a longer path is sent first): the relay still takes its own.
    const response = await post(app, { cookie: `${BROWSER_COOKIE}=${KNOWN}; ${HOST_BROWSER_COOKIE}=${mine.cookie}`, 'sec-fetch-site': 'same-origin' }, mine.csrf)
    expect(response.statusCode).toBe(302)
    expect(calls).toEqual([
      { method: 'startSignIn', request: { ticketId: TICKET, browser: { csrfValid: true, browserHash: createHash('sha256').update(mine.cookie).digest('base64url') } } },
    ])
    await app.close()
  })
})

describe('Sec-Fetch-Site on POST /oauth/start, with the page\'s own cookie and token', () => {
  it.each([
    ['same-origin', 302],
    ['none', 302],
    [undefined, 302],
    ['same-site', 403],
    ['cross-site', 403],
    ['something-else', 403],
  ] as const)('Sec-Fetch-Site: %s answers %i', async (site, status) => {
    const { app } = await makeApp()
    const { cookie, csrf } = await pageFor(app, HOST_BROWSER_COOKIE)
    const response = await post(app, { cookie: `${HOST_BROWSER_COOKIE}=${cookie}`, ...(site ? { 'sec-fetch-site': site } : {}) }, csrf)
    expect(response.statusCode).toBe(status)
    await app.close()
  })
})

// The key comes from the encryption key(s): a page rendered by one replica posts to another that
// shares RELAY_ENCRYPTION_KEY. A rotation adds the new key last on every replica, then moves it
// first: a replica that has not yet heard of a key cannot verify a page signed with it.
describe('the token key across replicas and key rotation (real relays on one Redis store)', () => {
  const KEY_1 = Buffer.alloc(32, 11).toString('base64')
  const KEY_2 = Buffer.alloc(32, 12).toString('base64')
  let as: AuthorizationServer
  let docs: McpUpstream
  const relays: Record<'a' | 'b' | 'rotated' | 'other', TestRelay> = {} as never

  beforeAll(async () => {
    as = await startAuthorizationServer()
    docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
    const storeKeyPrefix = `bb${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
    const start = (keys: string) =>
      startRelay({
        servers: [{ server_id: 'docs', mcp_url: docs.url }],
        env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, STORE_URL: REDIS_URL, RELAY_ENCRYPTION_KEY: keys },
        storeKeyPrefix,
      })
    relays.a = await start(KEY_1)
    relays.b = await start(KEY_1)
    relays.rotated = await start(`${KEY_2},${KEY_1}`)
    relays.other = await start(KEY_2)
  }, 30_000)

  afterAll(async () => {
    await Promise.all(Object.values(relays).map((relay) => relay.close()))
    await docs?.close()
    await as?.close()
  })

  it.each([
    ['a', 'b', 302, 'a replica with the same key'],
    ['a', 'rotated', 302, 'a replica that added a new key in front of the old one'],
    ['a', 'other', 403, 'a relay with another key'],
    ['rotated', 'a', 403, 'a replica that does not know the new key yet'],
  ] as const)('a page rendered by %s, posted to %s: %i (%s)', async (rendering, posting, status, _why) => {
    const userId = `u-${rendering}-${posting}`
    const loginUrl = new URL((await relays[rendering].post('/tools/auth-status', { user_id: userId, server_id: 'docs' })).body.servers[0].login_url)
    const page = await fetch(loginUrl)
    const cookie = /mcp_relay_browser=([A-Za-z0-9_-]{43})/.exec(page.headers.get('set-cookie') ?? '')![1]!
    const csrf = findConfirmationToken(await page.text())!
    const posted = await fetch(new URL(loginUrl.pathname, relays[posting].url), {
      method: 'POST',
      headers: { cookie: `${BROWSER_COOKIE}=${cookie}`, 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams({ csrf }).toString(),
      redirect: 'manual',
    })
    await posted.body?.cancel()
    expect(posted.status).toBe(status)
    if (status === 302) expect(posted.headers.get('location')).toMatch(new RegExp(`^${as.url}`))
  })
})
