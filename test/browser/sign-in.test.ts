// The sign-in experience in a real browser: headless Chromium opens a login link, sees the
// relay's confirmation page, presses Continue, signs in at the test authorization server's page
// (oidc-provider), lands on the relay's callback page. Then what must not work: a callback URL
// replayed in another browser, the confirmation page in a frame, a link used up by a preview;
// and SIGN_IN_CONFIRMATION=code end to end.
import { mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import type { Page, Response } from 'playwright-core'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { BROWSER_COOKIE } from '../../src/http/browser-binding.ts'
import { cookieValue, createCookieJar, pressContinue } from '../peers/browser.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'
import { launchChromium, type Chromium } from './chromium.ts'

/**
 * The README's pictures of the pages, taken in Chromium. Written into docs/ only with
 * UPDATE_SCREENSHOTS=1 (a test run must not change the work tree); else into a temp folder.
 */
const SCREENSHOT_DIR = process.env.UPDATE_SCREENSHOTS === '1' ? resolve(import.meta.dirname, '../../docs') : mkdtempSync(join(tmpdir(), 'relay-screenshots-'))
const SCREENSHOT = join(SCREENSHOT_DIR, 'callback-page.png')
const CONFIRMATION_SCREENSHOT = join(SCREENSHOT_DIR, 'confirmation-page.png')

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay
let browser: Chromium
/** A relay with SIGN_IN_CONFIRMATION=code; closed after Chromium, whose idle preconnections would hold its close up. */
let codeRelay: TestRelay | undefined

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
  browser = await launchChromium()
})

// Each test signs in as someone new: no authorization-server session carried over.
beforeEach(async () => {
  await browser.context.clearCookies()
})

afterAll(async () => {
  await browser?.close()
  await relay?.close()
  await codeRelay?.close()
  await Promise.all([docs?.close(), as?.close()])
})

/** What a page does besides rendering: console lines, uncaught errors, dialogs (alert, confirm). */
function watch(page: Page) {
  const seen = { console: [] as string[], errors: [] as string[], dialogs: [] as string[] }
  page.on('console', (message) => seen.console.push(`${message.type()}: ${message.text()}`))
  page.on('pageerror', (error) => seen.errors.push(error.message))
  page.on('dialog', (dialog) => {
    seen.dialogs.push(`${dialog.type()}: ${dialog.message()}`)
    // A dialog left open blocks the page; dismissing it is all the test needs after recording it.
    void dialog.dismiss()
  })
  return seen
}

/**
 * Chromium logs every 4xx it loads (the error page itself, /favicon.ico, which the relay answers
 * 404) as "Failed to load resource": those lines are the browser's network log, not the page's.
 */
function pageConsole(lines: string[]): string[] {
  return lines.filter((line) => !/^error: Failed to load resource: the server responded with a status of 4\d\d/.test(line))
}

async function loginUrlFor(userId: string, options: { forceReauth?: boolean; apiKey?: string; target?: TestRelay } = {}): Promise<string> {
  const status = await (options.target ?? relay).post(
    '/tools/auth-status',
    { user_id: userId, server_id: 'docs', force_reauth: options.forceReauth ?? false },
    options.apiKey ? { apiKey: options.apiKey } : {},
  )
  expect(status.status).toBe(200)
  expect(status.body.servers[0].status).toBe('need_auth')
  return status.body.servers[0].login_url as string
}

function expectPageHeaders(response: Response) {
  const headers = response.headers()
  const csp = headers['content-security-policy'] ?? ''
  expect(csp).toContain("default-src 'none'")
  expect(csp).toContain("frame-ancestors 'none'")
  // No script source is allowed at all: default-src 'none' covers scripts and there is no script-src.
  expect(csp).not.toContain('script-src')
  expect(headers['referrer-policy']).toBe('no-referrer')
  expect(headers['cache-control']).toContain('no-store')
  expect(headers['x-content-type-options']).toBe('nosniff')
  expect(headers['x-frame-options']).toBe('DENY')
  expect(headers['content-type']).toMatch(/^text\/html/)
}

/** The confirmation page: Continue leads on, and nothing before it has used the link. */
async function expectConfirmationPage(page: Page, response: Response | null, names: { server: string; workspace: string; user: string }) {
  expect(response?.status()).toBe(200)
  expectPageHeaders(response!)
  // No form-action: Chromium would apply it to the 302 after the POST (FIELD-NOTES.md, 2026-11-27).
  expect(response!.headers()['content-security-policy']).not.toContain('form-action')
  expect(await page.title()).toBe(`Connect ${names.server}? · MCP Auth Relay`)
  const text = await page.locator('main').innerText()
  expect(text).toContain(`Server\n${names.server}`)
  expect(text).toContain(`Workspace\n${names.workspace}`)
  expect(text).toContain(`Chat user\n${names.user}`)
  expect(text).toContain('Continue only if you asked for this yourself, in your own chat with the assistant.')
  expect(await page.locator('form').count()).toBe(1)
  expect(await page.locator('script, img, iframe').count()).toBe(0)
}

/** The browser's cookie for the relay, as Chromium holds it. */
async function browserCookieOf(context: Chromium['context']): Promise<string | undefined> {
  return (await context.cookies()).find((cookie) => cookie.name === BROWSER_COOKIE && cookie.domain === new URL(relay.url).hostname)?.value
}

describe('sign-in in headless Chromium', () => {
  it('shows the confirmation page, posts Continue, signs in at the authorization server and shows the connected page', async () => {
    const loginUrl = await loginUrlFor('erin')
    const page = await browser.context.newPage()
    const seen = watch(page)
    try {
      const confirmation = await page.goto(loginUrl)
      await expectConfirmationPage(page, confirmation, { server: 'Internal docs', workspace: 'default', user: 'erin' })
      // The browser cookie: HttpOnly, SameSite=Lax, under /oauth (Secure only on an https relay).
      const cookie = (await browser.context.cookies()).find((c) => c.name === BROWSER_COOKIE)
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/oauth', secure: false })
      mkdirSync(dirname(CONFIRMATION_SCREENSHOT), { recursive: true })
      await page.screenshot({ path: CONFIRMATION_SCREENSHOT, fullPage: true, animations: 'disabled' })

      // Continue: a POST answered by a 302 to the authorization server's own sign-in form.
      const posted = page.waitForRequest((request) => request.method() === 'POST' && request.url() === loginUrl)
      await Promise.all([page.waitForURL((url) => url.href.startsWith(as.url)), page.click('#continue')])
      const post = await posted
      expect((await post.response())?.status()).toBe(302)
      expect(post.postData()).toMatch(/^csrf=[A-Za-z0-9_-]{43}$/)
      await page.fill('#login', 'erin')
      const callback = page.waitForResponse((response) => response.url().startsWith(`${relay.url}/oauth/callback?`))
      await page.click('#submit')
      const response = await callback
      await page.waitForLoadState('load')

      expect(response.status()).toBe(200)
      expectPageHeaders(response)
      // The page never redirects: the browser stays on the callback.
      expect(new URL(page.url()).pathname).toBe('/oauth/callback')
      expect(await page.title()).toBe('Signed in · MCP Auth Relay')
      expect(await page.locator('h1').innerText()).toBe('Signed in')
      const text = await page.locator('main').innerText()
      expect(text).toContain('Internal docs is now connected.')
      expect(text).toContain('You can close this window and go back to the chat.')
      // Nothing the browser should not see: no code, state or token in the page.
      const query = new URL(page.url()).searchParams
      const html = await page.content()
      for (const secret of [query.get('code'), query.get('state')]) {
        expect(secret).toBeTruthy()
        expect(html).not.toContain(secret!)
      }
      expect(await page.locator('script, img, iframe, form').count()).toBe(0)
      expect(seen.errors).toEqual([])
      expect(seen.dialogs).toEqual([])
      expect(pageConsole(seen.console)).toEqual([])

      mkdirSync(dirname(SCREENSHOT), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true, animations: 'disabled' })
    } finally {
      await page.close()
    }

    // The token the browser obtained is erin's, and the relay uses it.
    const whoami = await relay.post('/tools/call-tool', { user_id: 'erin', tool_ref: 'docs::whoami', input: {} })
    expect(whoami.body).toMatchObject({ ok: true, result: { structuredContent: { sub: 'erin' } } })
  })

  it('a login link opened a second time shows a page that says so, not a redirect', async () => {
    const loginUrl = await loginUrlFor('frank')
    const page = await browser.context.newPage()
    try {
      await page.goto(loginUrl)
      await Promise.all([page.waitForURL((url) => url.href.startsWith(as.url)), page.click('#continue')])
      await page.fill('#login', 'frank')
      await Promise.all([page.waitForURL((url) => url.pathname === '/oauth/callback'), page.click('#submit')])
      const again = await page.goto(loginUrl)
      expect(again?.status()).toBe(404)
      expectPageHeaders(again!)
      expect(page.url()).toBe(loginUrl)
      expect(await page.locator('h1').innerText()).toBe('This sign-in link does not work')
      expect(await page.locator('main').innerText()).toContain('Ask the assistant for a new link.')
    } finally {
      await page.close()
    }
  })

  // Markup an authorization server (or anyone who crafts the callback URL) could put into
  // error / error_description: each would leave a trace (console line, dialog, global) if it ran.
  const payloads = [
    `<script>console.log('xss-script'); alert('xss-script')</script>`,
    `<img src=x onerror="console.log('xss-img'); alert('xss-img')">`,
    `"><svg onload="console.log('xss-svg')">`,
    `</p><script>window.xss = 1</script><p>`,
  ]

  it('shows error_description as text: no script in it runs, nothing is even attempted', async () => {
    // Control: the watcher does see a script that runs and a dialog that opens.
    const control = await browser.context.newPage()
    const controlSeen = watch(control)
    await control.setContent(`<script>console.log('xss-control'); alert('xss-control')</script>`)
    await control.close()
    expect(controlSeen.console).toContain('log: xss-control')
    expect(controlSeen.dialogs).toEqual(['alert: xss-control'])

    for (const payload of payloads) {
      // A live flow: Continue on the login link redirects to the authorization server with a fresh
      // state, bound to the cookie Chromium then carries.
      const jar = createCookieJar()
      const start = await pressContinue(await loginUrlFor('mallory-target', { forceReauth: true }), { jar, timeoutMs: 10_000 })
      expect(start.status).toBe(302)
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!
      const value = cookieValue(jar, `${relay.url}/oauth/callback`, BROWSER_COOKIE)!
      await browser.context.addCookies([{ name: BROWSER_COOKIE, value, domain: new URL(relay.url).hostname, path: '/oauth' }])
      const callback = new URL(`${relay.url}/oauth/callback`)
      // With the issuer's `iss`, as RFC 9207 has it sign an error response (it advertises iss).
      callback.search = new URLSearchParams({ error: 'access_denied', error_description: payload, state, iss: as.issuer }).toString()

      const page = await browser.context.newPage()
      const seen = watch(page)
      try {
        const response = await page.goto(callback.href)
        expect(response?.status(), payload).toBe(400)
        expectPageHeaders(response!)
        expect(await page.locator('h1').innerText()).toBe('Sign-in did not complete')
        // The payload is on the page, verbatim, as text.
        expect(await page.locator('main').innerText()).toContain(`Sign-in was not completed: ${payload}`)
        expect(await page.locator('script, img, svg, iframe').count(), payload).toBe(0)
        expect(await page.evaluate(() => (globalThis as { xss?: unknown }).xss), payload).toBeUndefined()
        expect(seen.dialogs, payload).toEqual([])
        expect(seen.errors, payload).toEqual([])
        // Not even a Content-Security-Policy refusal: the markup never became markup.
        expect(pageConsole(seen.console), payload).toEqual([])
      } finally {
        await page.close()
      }
    }
  })

  it('a link preview, a mail scanner (GET, HEAD) and a second look change nothing: the link still signs in', async () => {
    const loginUrl = await loginUrlFor('gina')
    for (const method of ['GET', 'HEAD', 'GET']) {
      const preview = await fetch(loginUrl, { method, headers: { 'user-agent': 'Slackbot-LinkExpanding 1.0' }, redirect: 'manual', signal: AbortSignal.timeout(10_000) })
      expect(preview.status, method).toBe(200)
      expect(preview.headers.get('location')).toBeNull()
      await preview.body?.cancel()
    }
    const page = await browser.context.newPage()
    try {
      await page.goto(loginUrl)
      const again = await page.goto(loginUrl)
      await expectConfirmationPage(page, again, { server: 'Internal docs', workspace: 'default', user: 'gina' })
      await Promise.all([page.waitForURL((url) => url.href.startsWith(as.url)), page.click('#continue')])
      await page.fill('#login', 'gina')
      await Promise.all([page.waitForURL((url) => url.pathname === '/oauth/callback'), page.click('#submit')])
      expect(await page.locator('h1').innerText()).toBe('Signed in')
    } finally {
      await page.close()
    }
    expect((await relay.post('/tools/call-tool', { user_id: 'gina', tool_ref: 'docs::whoami', input: {} })).body.result.structuredContent.sub).toBe('gina')
  })

  it('a callback URL replayed in a second browser is refused, and the first browser still completes', async () => {
    const loginUrl = await loginUrlFor('hana')
    const page = await browser.context.newPage()
    const other = await launchChromium()
    try {
      await page.goto(loginUrl)
      await Promise.all([page.waitForURL((url) => url.href.startsWith(as.url)), page.click('#continue')])
      await page.fill('#login', 'hana')
      // Hold the first browser just before the callback: the callback URL (code + state) is what
      // leaks. Playwright does not route redirects, so the authorization server's redirects after
      // the sign-in form are followed by this context's own request client (its cookies), and the
      // form's answer is replaced by a page that holds the browser there.
      let callbackUrl: string | undefined
      const isLogin = (url: URL) => url.origin === as.url && url.pathname.endsWith('/login')
      await page.route(isLogin, async (route) => {
        let response = await route.fetch({ maxRedirects: 0 })
        let base = route.request().url()
        for (let hop = 0; hop < 10 && response.headers().location; hop++) {
          const next = new URL(response.headers().location!, base)
          if (next.origin === relay.url) {
            callbackUrl = next.href
            break
          }
          response = await browser.context.request.get(next.href, { maxRedirects: 0 })
          base = next.href
        }
        await route.fulfill({ status: 200, contentType: 'text/html', body: '<p>held before the callback</p>' })
      })
      await Promise.all([page.waitForLoadState('load'), page.click('#submit')])
      await expect.poll(() => callbackUrl, { timeout: 10_000 }).toBeDefined()
      await page.unroute(isLogin)

      const stranger = await other.context.newPage()
      const refused = await stranger.goto(callbackUrl!)
      expect(refused?.status()).toBe(400)
      expectPageHeaders(refused!)
      expect(await stranger.locator('main').innerText()).toContain('This sign-in was started in another browser.')
      expect((await relay.post('/tools/call-tool', { user_id: 'hana', tool_ref: 'docs::whoami', input: {} })).body.error_code).toBe('NOT_AUTHORIZED')
      // The second browser has a cookie of its own now (from nothing: it never saw the page), still not the first one's.
      expect(await browserCookieOf(other.context)).not.toBe(await browserCookieOf(browser.context))

      const completed = await page.goto(callbackUrl!)
      expect(completed?.status()).toBe(200)
      expect(await page.locator('h1').innerText()).toBe('Signed in')
    } finally {
      await page.close()
      await other.close()
    }
    expect((await relay.post('/tools/call-tool', { user_id: 'hana', tool_ref: 'docs::whoami', input: {} })).body.result.structuredContent.sub).toBe('hana')
  })

  it('the confirmation page does not render in a frame (frame-ancestors), where a control page does', async () => {
    const loginUrl = await loginUrlFor('ivan')
    const page = await browser.context.newPage()
    const seen = watch(page)
    let attacker: Server | undefined
    try {
      // An attacker's page that frames the link (to make the Continue button a clickjacking target),
      // beside a control frame of a relay document that may be framed.
      // Served from another loopback origin: Chromium's local-network checks refuse loopback frames
      // in a page that came from anywhere else, which would stop the frame before frame-ancestors could.
      attacker = createServer((_request, response) => {
        response.writeHead(200, { 'content-type': 'text/html' })
        response.end(`<iframe name="victim" src="${loginUrl}" width="600" height="400"></iframe><iframe name="control" src="${relay.url}/oauth/client-metadata.json"></iframe>`)
      })
      await new Promise<void>((listening) => attacker!.listen(0, '127.0.0.1', listening))
      const framed = page.waitForResponse((response) => response.url() === loginUrl)
      const control = page.waitForResponse((response) => response.url().endsWith('/oauth/client-metadata.json'))
      await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`)
      expect((await framed).status()).toBe(200)
      await control
      await page.waitForLoadState('load')
      const frame = (name: string) => page.frames().find((candidate) => candidate.name() === name)!
      await expect.poll(() => frame('control').locator('body').innerText().catch(() => ''), { timeout: 10_000 }).toContain('client_id')
      expect(await frame('victim').locator('#continue').count()).toBe(0)
      expect(await frame('victim').locator('body').innerText().catch(() => '')).not.toContain('Continue')
      expect(seen.console.some((line) => /frame-ancestors/.test(line))).toBe(true)
    } finally {
      await page.close()
      attacker?.closeAllConnections()
      await new Promise((closed) => (attacker ? attacker.close(closed) : closed(undefined)))
    }
    // Framing used nothing up.
    const entry = (await relay.post('/tools/auth-status', { user_id: 'ivan', server_id: 'docs' })).body.servers[0]
    expect(entry.login_url).toBe(loginUrl)
  })

  it("page mode, the attack: someone else's link shows their workspace and user, and nothing happens until Continue", async () => {
    // Mallory chats through the workspace whose key is OTHER_TENANT_KEY ("other") and sends her link to Victor.
    const loginUrl = await loginUrlFor('mallory-chat-user', { apiKey: OTHER_TENANT_KEY })
    const page = await browser.context.newPage()
    try {
      const response = await page.goto(loginUrl)
      await expectConfirmationPage(page, response, { server: 'Internal docs', workspace: 'other', user: 'mallory-chat-user' })
      expect(await page.locator('main').innerText()).toContain('If someone sent you this link, close this page')
    } finally {
      // Victor reads who it is for, and closes the page.
      await page.close()
    }
    const answer = await relay.post('/tools/call-tool', { user_id: 'mallory-chat-user', tool_ref: 'docs::whoami', input: {} }, { apiKey: OTHER_TENANT_KEY })
    expect(answer.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', login_url: loginUrl })
  })
})

describe('SIGN_IN_CONFIRMATION=code in headless Chromium', () => {
  /** Moves the code relay's clock (not the authorization server's): pending sign-ins live 10 minutes by it. */
  let clockOffsetMs = 0

  beforeAll(async () => {
    codeRelay = await startRelay({
      servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, SIGN_IN_CONFIRMATION: 'code' },
      now: () => Date.now() + clockOffsetMs,
    })
  })

  /** Signs `userId`'s link in as `account` in Chromium; returns the code the callback page shows. */
  async function codeFromBrowser(userId: string, account = userId, screenshot?: string): Promise<string> {
    const loginUrl = await loginUrlFor(userId, { target: codeRelay! })
    // Signed out at the authorization server, so its sign-in form shows every time.
    await browser.context.clearCookies()
    const page = await browser.context.newPage()
    const seen = watch(page)
    try {
      await page.goto(loginUrl)
      await Promise.all([page.waitForURL((url) => url.href.startsWith(as.url)), page.click('#continue')])
      await page.fill('#login', account)
      const callback = page.waitForResponse((response) => response.url().startsWith(`${codeRelay!.url}/oauth/callback?`))
      await page.click('#submit')
      const response = await callback
      await page.waitForLoadState('load')
      expect(response.status()).toBe(200)
      expectPageHeaders(response)
      expect(await page.locator('h1').innerText()).toBe('One more step')
      const text = await page.locator('main').innerText()
      expect(text).toContain('give the assistant this confirmation code in your chat')
      const code = await page.locator('#confirmation-code').innerText()
      expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/)
      expect(seen.errors).toEqual([])
      if (screenshot) await page.screenshot({ path: screenshot, fullPage: true, animations: 'disabled' })
      return code
    } finally {
      await page.close()
    }
  }

  const confirm = async (userId: string, code: string) =>
    (await codeRelay!.post('/tools/auth-status', { user_id: userId, server_id: 'docs', confirm_code: code })).body.servers[0]
  const whoami = async (userId: string) => (await codeRelay!.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })).body
  const wrong = (code: string, index: number) => `${code.slice(0, 6)}${String(index).repeat(5)}` === code ? `${code.slice(0, 6)}ZZZZZ` : `${code.slice(0, 6)}${String(index).repeat(5)}`

  it('wrong code: still pending, no link; right code: signed in as the account that signed in', async () => {
    const code = await codeFromBrowser('jules', 'jules', join(SCREENSHOT_DIR, 'confirmation-code-page.png'))
    const pending = await whoami('jules')
    expect(pending).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', pending_confirmation: true })
    expect(pending).not.toHaveProperty('login_url')
    const wrongAnswer = await confirm('jules', wrong(code, 1))
    expect(wrongAnswer).toMatchObject({ status: 'need_auth', pending_confirmation: true })
    expect(wrongAnswer.message).toContain('(4 tries left)')
    expect(await confirm('jules', code)).toMatchObject({ status: 'authorized' })
    expect((await whoami('jules')).result.structuredContent.sub).toBe('jules')
  })

  it('five wrong codes discard the sign-in: the right code then gets a new link, not a token', async () => {
    const code = await codeFromBrowser('kim')
    const answers = []
    for (let index = 0; index < 5; index++) answers.push(await confirm('kim', wrong(code, index)))
    expect(answers.map((entry) => entry.pending_confirmation ?? false)).toEqual([true, true, true, true, false])
    expect(answers[4].message).toContain('Too many wrong confirmation codes')
    expect(await confirm('kim', code)).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
    expect((await whoami('kim')).error_code).toBe('NOT_AUTHORIZED')
  })

  it('ten minutes after the sign-in, the code no longer works', async () => {
    const code = await codeFromBrowser('lena')
    clockOffsetMs = 10 * 60_000 + 1000
    try {
      expect(await confirm('lena', code)).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
    } finally {
      clockOffsetMs = 0
    }
    expect(await confirm('lena', code)).toMatchObject({ status: 'need_auth', login_url: expect.any(String) })
    expect((await whoami('lena')).error_code).toBe('NOT_AUTHORIZED')
  })

  it("the attack: user A's link completed in B's browser signs A in only if A is given B's code", async () => {
    const code = await codeFromBrowser('mallory', 'victor')
    for (let index = 0; index < 5; index++) await confirm('mallory', wrong(code, index))
    expect((await whoami('mallory')).error_code).toBe('NOT_AUTHORIZED')
    expect(await codeRelay!.deps.tokens.get({ tenant: 'default', userId: 'mallory', serverId: 'docs' })).toBeUndefined()
    const handedOver = await codeFromBrowser('mallory', 'victor')
    expect(await confirm('mallory', handedOver)).toMatchObject({ status: 'authorized' })
    expect((await whoami('mallory')).result.structuredContent.sub).toBe('victor')
  })
})
