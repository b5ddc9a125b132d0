// The sign-in experience in a real browser: headless Chromium opens a login link, signs in at
// the test authorization server's page (oidc-provider), lands on the relay's callback page.
import { mkdirSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { Page, Response } from 'playwright-core'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { launchChromium, type Chromium } from './chromium.ts'

const SCREENSHOT = resolve(import.meta.dirname, '../../docs/callback-page.png')

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay
let browser: Chromium

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

async function loginUrlFor(userId: string, options: { forceReauth?: boolean } = {}): Promise<string> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs', force_reauth: options.forceReauth ?? false })
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
  expect(headers['content-type']).toMatch(/^text\/html/)
}

describe('sign-in in headless Chromium', () => {
  it('signs in at the authorization server and shows the connected page', async () => {
    const loginUrl = await loginUrlFor('erin')
    const page = await browser.context.newPage()
    const seen = watch(page)
    try {
      await page.goto(loginUrl)
      // The authorization server's own sign-in form.
      expect(page.url().startsWith(as.url)).toBe(true)
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
      // A live flow: the login link redirects to the authorization server with a fresh state.
      const start = await fetch(await loginUrlFor('mallory-target', { forceReauth: true }), {
        redirect: 'manual',
        signal: AbortSignal.timeout(10_000),
      })
      expect(start.status).toBe(302)
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!
      const callback = new URL(`${relay.url}/oauth/callback`)
      callback.search = new URLSearchParams({ error: 'access_denied', error_description: payload, state }).toString()

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
})
