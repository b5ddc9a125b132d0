// The browser's half of sign-in under attack, against the real relay and oidc-provider: forged,
// expired, replayed and cross-user `state`; a callback in another browser; script payloads in
// error= and error_description= rendered in headless Chromium; a code issued to another client;
// the rate limit on both routes.
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { BROWSER_COOKIE } from '../../src/http/browser-binding.ts'
import { chromiumLaunchOptions } from '../browser/chromium.ts'
import { cookieValue, createCookieJar, findConfirmationToken, followToCallback, pressContinue, type CookieJar } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'
import { answeredByStatus, createTally, sendChecked, signIn, whoami } from './harness.ts'

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay
let browser: Browser | undefined
let limitedRelay: TestRelay | undefined
const tally = createTally('sign-in-endpoints')
/** Moves the relay's clock (not the authorization server's), to make its tokens due for refresh. */
let clockOffsetMs = 0

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    now: () => Date.now() + clockOffsetMs,
  })
})

afterAll(async () => {
  tally.print({ serverErrors: tally.serverErrors(), relayAnswers: await answeredByStatus([relay, limitedRelay]) })
  await browser?.close()
  await relay?.close()
  await Promise.all([docs?.close(), as?.close()])
})

/** The browser (cookie jar) that pressed Continue for each `state`: callbacks are delivered by it unless a test says otherwise. */
const browsers = new Map<string, CookieJar>()

/** A pending sign-in for `userId`: the browser went through the authorization server and holds the callback URL. */
async function pendingCallback(userId: string, account: string, apiKey?: string): Promise<URL> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs', force_reauth: true }, apiKey ? { apiKey } : {})
  expect(status.body.servers[0].status).toBe('need_auth')
  const jar = createCookieJar()
  const url = new URL(await followToCallback(status.body.servers[0].login_url, account, { jar }))
  browsers.set(url.searchParams.get('state')!, jar)
  return url
}

/** A live `state`: Continue pressed on the login link, the authorization request not answered yet. */
async function liveState(userId: string): Promise<string> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs', force_reauth: true })
  const jar = createCookieJar()
  const start = await pressContinue(status.body.servers[0].login_url, { jar })
  tally.add(start.status)
  expect(start.status).toBe(302)
  const state = new URL(start.headers.get('location')!).searchParams.get('state')!
  browsers.set(state, jar)
  return state
}

/** Delivers a callback URL from the browser that started its flow (by its `state`), or from `browser`; none for an unknown state. */
function callback(url: URL | string, browser?: CookieJar | 'stranger') {
  const target = new URL(url)
  const jar = browser === 'stranger' ? undefined : (browser ?? browsers.get(target.searchParams.get('state') ?? ''))
  const cookie = jar?.header(target)
  return sendChecked(relay, tally, { method: 'GET', path: `${target.pathname}${target.search}`, headers: cookie ? { cookie } : {} })
}

const tokenRequestCount = () => as.tokenRequests.length

describe('forged state', () => {
  it('is refused with a page, and nothing reaches the token endpoint', async () => {
    const before = tokenRequestCount()
    const real = await pendingCallback('forger', 'forger')
    const realState = real.searchParams.get('state')!
    // The real state with its last character changed (to one it certainly is not).
    const nearMiss = realState.slice(0, -1) + (realState.endsWith('A') ? 'B' : 'A')
    for (const state of ['x', 'A'.repeat(43), nearMiss, '<script>alert(1)</script>', '%00', real.searchParams.get('code')!]) {
      const forged = new URL(real)
      forged.searchParams.set('state', state)
      const page = await callback(forged)
      expect(page.status, state).toBe(400)
      expect(page.text).toContain('expired or was already used')
      expect(page.headers.get('location')).toBeNull()
    }
    expect(tokenRequestCount()).toBe(before)
    expect((await whoami(relay, 'forger')).body.error_code).toBe('NOT_AUTHORIZED')
    // The real callback still works: forged attempts did not burn the flow.
    expect((await callback(real)).status).toBe(200)
    expect((await whoami(relay, 'forger')).sub).toBe('forger')
  })
})

describe('expired state and ticket', () => {
  it('a callback 11 minutes after /oauth/start is refused without a token request', async () => {
    const pending = await pendingCallback('slowpoke', 'slowpoke')
    const before = tokenRequestCount()
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(Date.now() + 11 * 60 * 1000)
      const page = await callback(pending)
      expect(page.status).toBe(400)
      expect(page.text).toContain('expired or was already used')
    } finally {
      vi.useRealTimers()
    }
    expect(tokenRequestCount()).toBe(before)
    expect((await whoami(relay, 'slowpoke')).body.error_code).toBe('NOT_AUTHORIZED')
  })

  it('a login link a day and an hour old is refused', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'late', server_id: 'docs' })
    const path = new URL(status.body.servers[0].login_url).pathname
    vi.useFakeTimers({ toFake: ['Date'] })
    try {
      vi.setSystemTime(Date.now() + 25 * 60 * 60 * 1000)
      const page = await sendChecked(relay, tally, { method: 'GET', path })
      expect(page.status).toBe(404)
      expect(page.text).toContain('unknown, expired or was already used')
    } finally {
      vi.useRealTimers()
    }
  })
})

describe('replayed state and login link', () => {
  it('only the first delivery counts; a replay changes nothing', async () => {
    const pending = await pendingCallback('replay-victim', 'replay-victim')
    expect((await callback(pending)).status).toBe(200)
    const stored = await relay.deps.tokens.get({ tenant: 'default', userId: 'replay-victim', serverId: 'docs' })
    const before = tokenRequestCount()
    for (let i = 0; i < 3; i++) {
      const replay = await callback(pending)
      expect(replay.status).toBe(400)
      expect(replay.headers.get('location')).toBeNull()
    }
    expect(tokenRequestCount()).toBe(before)
    const after = await relay.deps.tokens.get({ tenant: 'default', userId: 'replay-victim', serverId: 'docs' })
    expect(after?.accessToken).toBe(stored?.accessToken)
    expect((await whoami(relay, 'replay-victim')).sub).toBe('replay-victim')
  })

  it('five deliveries of one callback at once: one sign-in, one token request', async () => {
    const pending = await pendingCallback('double-clicker', 'double-clicker')
    const before = tokenRequestCount()
    const pages = await Promise.all(Array.from({ length: 5 }, () => callback(pending)))
    expect(pages.map((page) => page.status).sort()).toEqual([200, 400, 400, 400, 400])
    expect(tokenRequestCount() - before).toBe(1)
    expect((await whoami(relay, 'double-clicker')).sub).toBe('double-clicker')
  })

  it('a login link opened in five tabs at once: five pages; Continue pressed in all five starts one flow', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'five-tabs', server_id: 'docs' })
    const path = new URL(status.body.servers[0].login_url).pathname
    const cookie = `${BROWSER_COOKIE}=${'t'.repeat(43)}`
    const pages = await Promise.all(Array.from({ length: 5 }, () => sendChecked(relay, tally, { method: 'GET', path, headers: { cookie } })))
    expect(pages.map((page) => page.status)).toEqual([200, 200, 200, 200, 200])
    const csrf = findConfirmationToken(pages[0]!.text)!
    const form = { method: 'POST', path, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf }).toString() }
    const starts = await Promise.all(Array.from({ length: 5 }, () => sendChecked(relay, tally, form)))
    expect(starts.map((start) => start.status).sort()).toEqual([302, 404, 404, 404, 404])
  })

  it('a used login link does not start a second flow', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'link-reuser', server_id: 'docs' })
    const loginUrl = status.body.servers[0].login_url
    expect((await pressContinue(loginUrl)).status).toBe(302)
    const again = await sendChecked(relay, tally, { method: 'GET', path: new URL(loginUrl).pathname })
    expect(again.status).toBe(404)
    expect(again.headers.get('location')).toBeNull()
  })
})

describe('cross-user state', () => {
  // The flow named by `state` says whose sign-in it is, and it completes only in the browser that
  // pressed Continue (its cookie): delivered by another browser it changes nothing; delivered by
  // the right one the token lands under the flow's tenant and user and nobody else; and mixing
  // A's state with B's code never stores anything for either.
  it("A's callback delivered by B's browser changes nothing and leaves A's flow for A's browser", async () => {
    const pendingA = await pendingCallback('cross-a', 'account-a')
    const before = tokenRequestCount()
    // B's browser: no cookie at all, or a browser cookie of its own.
    for (const stranger of ['stranger', (() => {
      const jar = createCookieJar()
      jar.store(new URL(relay.url), new Headers([['set-cookie', `${BROWSER_COOKIE}=${'b'.repeat(43)}; Path=/oauth`]]))
      return jar
    })()] as const) {
      const refused = await callback(pendingA, stranger)
      expect(refused.status).toBe(400)
      expect(refused.text).toContain('This sign-in was started in another browser.')
    }
    expect(tokenRequestCount()).toBe(before)
    expect((await whoami(relay, 'cross-a')).body.error_code).toBe('NOT_AUTHORIZED')
    // A's own browser still completes it.
    expect((await callback(pendingA)).status).toBe(200)
    expect((await whoami(relay, 'cross-a')).sub).toBe('account-a')
    expect((await whoami(relay, 'cross-b')).body.error_code).toBe('NOT_AUTHORIZED')
    expect((await whoami(relay, 'cross-a', { apiKey: OTHER_TENANT_KEY })).body.error_code).toBe('NOT_AUTHORIZED')
  })

  it("A's state with B's code stores nothing for either, and B's token is never A's", async () => {
    const pendingA = await pendingCallback('mix-a', 'account-mix-a')
    const pendingB = await pendingCallback('mix-b', 'account-mix-b')
    const mixed = new URL(pendingA)
    mixed.searchParams.set('code', pendingB.searchParams.get('code')!)
    const page = await callback(mixed)
    expect(page.status).toBe(400)
    expect((await whoami(relay, 'mix-a')).body.error_code).toBe('NOT_AUTHORIZED')
    expect((await whoami(relay, 'mix-b')).body.error_code).toBe('NOT_AUTHORIZED')
    // A's flow is used up; B's own callback either still works (as B) or is refused; never A's account.
    expect((await callback(pendingA)).status).toBe(400)
    await callback(pendingB)
    const b = await whoami(relay, 'mix-b')
    expect([undefined, 'account-mix-b']).toContain(b.sub)
    expect((await whoami(relay, 'mix-a')).body.error_code).toBe('NOT_AUTHORIZED')
  })

  it('a flow started under another tenant lands under that tenant', async () => {
    const pending = await pendingCallback('same-name', 'tenant-other-account', OTHER_TENANT_KEY)
    expect((await callback(pending)).status).toBe(200)
    expect((await whoami(relay, 'same-name', { apiKey: OTHER_TENANT_KEY })).sub).toBe('tenant-other-account')
    expect((await whoami(relay, 'same-name')).body.error_code).toBe('NOT_AUTHORIZED')
  })
})

describe('a code issued to another client', () => {
  it('is refused by the token endpoint and stores nothing', async () => {
    // An attacker registers a client of their own, with the relay's callback as redirect URI.
    const metadata = (await (await fetch(`${as.issuer}/.well-known/openid-configuration`)).json()) as { registration_endpoint: string; authorization_endpoint: string }
    const registered = (await (
      await fetch(metadata.registration_endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ redirect_uris: [`${relay.url}/oauth/callback`], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'] }),
      })
    ).json()) as { client_id: string }
    expect(registered.client_id).toBeTypeOf('string')
    const verifier = 'v'.repeat(64)
    const challenge = Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))).toString('base64url')
    const authorize = new URL(metadata.authorization_endpoint)
    authorize.search = new URLSearchParams({
      client_id: registered.client_id,
      redirect_uri: `${relay.url}/oauth/callback`,
      response_type: 'code',
      scope: 'mcp:read',
      state: 'attacker-state',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource: docs.url,
    }).toString()
    const attackerCallback = new URL(await followToCallback(authorize.href, 'mallory'))
    const foreignCode = attackerCallback.searchParams.get('code')!
    expect(foreignCode).toBeTruthy()

    // Delivered with a victim's live state: the relay exchanges it as its own client, and the
    // authorization server refuses (the code is bound to the other client).
    const state = await liveState('code-victim')
    const before = tokenRequestCount()
    const page = await callback(`${relay.url}/oauth/callback?${new URLSearchParams({ code: foreignCode, state, iss: as.issuer })}`)
    expect(page.status).toBe(400)
    expect(page.text).toContain('invalid_grant')
    expect(as.tokenRequests.slice(before)).toEqual([expect.objectContaining({ grantType: 'authorization_code', ok: false, error: 'invalid_grant' })])
    expect((await whoami(relay, 'code-victim')).body.error_code).toBe('NOT_AUTHORIZED')
    // The attacker's own state names no flow at the relay.
    expect((await callback(attackerCallback)).status).toBe(400)
  })

  it('a callback whose iss names another authorization server is refused (RFC 9207)', async () => {
    const pending = await pendingCallback('iss-victim', 'iss-victim')
    pending.searchParams.set('iss', 'https://evil.example')
    const before = tokenRequestCount()
    const page = await callback(pending)
    expect(page.status).toBe(400)
    expect(tokenRequestCount()).toBe(before)
    expect((await whoami(relay, 'iss-victim')).body.error_code).toBe('NOT_AUTHORIZED')
  })
})

describe('error= forged on one\'s own flow', () => {
  // The error parameter comes from the browser, which anyone controls: it must not be taken as
  // the authorization server's word about the relay's client. Forgetting the dynamically
  // registered client would make every user's next refresh go out under a new client_id, which
  // the server refuses: one request signing out every user of the server.
  it('error=invalid_client does not make the relay drop its client registration', async () => {
    await signIn(relay, 'bystander', 'bystander')
    const clientsBefore = new Set(as.tokenRequests.map((request) => request.clientId))
    for (const error of ['invalid_client', 'unauthorized_client', 'invalid_grant']) {
      const state = await liveState('mallory')
      const page = await callback(`${relay.url}/oauth/callback?${new URLSearchParams({ state, error, iss: as.issuer })}`)
      expect(page.status).toBe(400)
    }
    clockOffsetMs = 2 * 60_000
    try {
      const after = await whoami(relay, 'bystander')
      expect(after.sub, JSON.stringify(after.body)).toBe('bystander')
    } finally {
      clockOffsetMs = 0
    }
    const refreshes = as.tokenRequests.filter((request) => request.grantType === 'refresh_token')
    expect(refreshes.at(-1)).toMatchObject({ ok: true })
    expect(clientsBefore).toContain(refreshes.at(-1)!.clientId)
  })
})

describe('error= and error_description= with HTML and script payloads, in headless Chromium', () => {
  const PAYLOADS = [
    '<script>window.__xss=1;alert(1)</script>',
    '<img src=x onerror="window.__xss=1;alert(1)">',
    '"><svg onload="window.__xss=1;alert(1)">',
    "'><iframe src=\"javascript:alert(1)\"></iframe>",
    '</title><script>alert(1)</script>',
    '</p><a href="javascript:alert(1)" id=clickme>click</a>',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    '<base href="https://evil.example/"><link rel=stylesheet href=/x.css>',
    '<style>body{background:url(https://evil.example/leak)}</style>',
    '\u202e<b>bold</b>&amp;&lt;',
  ]

  it('escapes every payload, sends CSP, runs no script and loads nothing', async () => {
    browser = await chromium.launch({ ...(await chromiumLaunchOptions()), timeout: 15_000 })
    const context = await browser.newContext({ javaScriptEnabled: true })
    const relayHost = new URL(relay.url).hostname
    const page = await context.newPage()
    const dialogs: string[] = []
    const requests: string[] = []
    const consoleMessages: string[] = []
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.dismiss()
    })
    page.on('request', (request) => requests.push(request.url()))
    page.on('console', (message) => consoleMessages.push(message.text()))

    let rendered = 0
    for (const [index, payload] of PAYLOADS.entries()) {
      for (const where of ['error_description', 'error'] as const) {
        const pending = await pendingCallback(`xss-${index}-${where}`, `xss-${index}`)
        pending.searchParams.delete('code')
        pending.searchParams.set('error', where === 'error' ? payload : 'access_denied')
        if (where === 'error_description') pending.searchParams.set('error_description', payload)
        // Chromium is the browser that pressed Continue: it carries that browser's cookie.
        const value = cookieValue(browsers.get(pending.searchParams.get('state')!)!, pending, BROWSER_COOKIE)!
        await context.addCookies([{ name: BROWSER_COOKIE, value, domain: relayHost, path: '/oauth' }])
        requests.length = 0
        const response = await page.goto(pending.href, { timeout: 10_000 })
        tally.add(response!.status())
        rendered++
        expect(response!.status()).toBe(400)
        const headers = response!.headers()
        expect(headers['content-security-policy']).toContain("default-src 'none'")
        expect(headers['content-security-policy']).not.toContain('script-src')
        expect(headers['referrer-policy']).toBe('no-referrer')
        expect(headers['x-content-type-options']).toBe('nosniff')
        // What the user reads is the payload as text; the DOM holds none of its elements.
        const text = await page.locator('main').innerText()
        expect(text).toContain(payload.replace(/\s+/g, ' ').trim().slice(0, 20))
        // (A string: this file is type-checked without the DOM library.)
        const elements = await page.evaluate(`({
          scripts: document.querySelectorAll('script').length,
          injected: document.querySelectorAll('main img, main svg, main iframe, main a, main meta, main base, main link, main style, main b').length,
          xss: window.__xss,
          url: location.href,
        })`)
        expect(elements).toEqual({ scripts: 0, injected: 0, xss: undefined, url: pending.href })
        expect(requests, payload).toEqual([pending.href])
        expect((await whoami(relay, `xss-${index}-${where}`)).body.error_code).toBe('NOT_AUTHORIZED')
      }
    }
    await page.waitForTimeout(200)
    expect(dialogs).toEqual([])
    // The only console line a page may cause is Chromium's note on the document's own 400.
    expect(consoleMessages.filter((message) => !/status of 400/.test(message))).toEqual([])
    expect(rendered).toBe(PAYLOADS.length * 2)
    await context.close()
  }, 60_000)
})

describe('rate limit on /oauth/start and /oauth/callback', () => {
  it('answers 429 pages past a low limit on each route, and leaves the tool routes alone', async () => {
    const limited = await startRelay({
      servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
      rateLimit: { max: 3, timeWindowMs: 60_000 },
    })
    limitedRelay = limited
    try {
      const status = await limited.post('/tools/auth-status', { user_id: 'limited', server_id: 'docs' })
      const loginPath = new URL(status.body.servers[0].login_url).pathname
      for (const path of [loginPath, '/oauth/start/unknown-ticket', '/oauth/callback?state=x&code=y', '/oauth/callback']) {
        const page = await sendChecked(limited, tally, { method: 'GET', path })
        expect(page.status, path).not.toBe(429)
      }
      // Both routes have now seen more than their limit between them; each is limited on its own count.
      for (const path of ['/oauth/start/unknown-ticket', '/oauth/callback?state=x&code=y']) {
        let answer = await sendChecked(limited, tally, { method: 'GET', path })
        for (let i = 0; i < 3 && answer.status !== 429; i++) answer = await sendChecked(limited, tally, { method: 'GET', path })
        expect(answer.status, path).toBe(429)
        expect(answer.headers.get('retry-after')).toBeTruthy()
        expect(answer.headers.get('content-type')).toContain('text/html')
        expect(answer.headers.get('content-security-policy')).toContain("default-src 'none'")
        expect(answer.text).toContain('Too many attempts')
      }
      // API-key routes are not limited by it.
      for (let i = 0; i < 10; i++) expect((await limited.post('/tools/auth-status', { user_id: 'limited' })).status).toBe(200)
    } finally {
      await limited.close()
    }
  })
})

describe('afterwards', () => {
  it('a normal sign-in still works end to end', async () => {
    await signIn(relay, 'after-user', 'after-user')
    expect((await whoami(relay, 'after-user')).sub).toBe('after-user')
    expect(tally.serverErrors()).toBe(0)
  })
})
