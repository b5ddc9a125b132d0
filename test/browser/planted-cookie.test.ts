// DESIGN.md §6, the planted-cookie attack in a real browser. An attacker who controls a page on
// the relay's site (a sibling subdomain; here another port of 127.0.0.1, which is same-site and,
// as cookies ignore ports, shares the relay's cookies) wants a victim to link the victim's account
// to the attacker's chat user. Its server opens the attacker's own login link with a cookie value
// it chose and reads the genuine CSRF token from the page; its page plants that cookie in the
// victim's browser and auto-submits Continue. Chromium marks that POST `Sec-Fetch-Site:
// same-site`, and the relay refuses it: nothing is used up, and the link still works from the
// relay's own page (`same-origin`).
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BROWSER_COOKIE } from '../../src/http/browser-binding.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { findConfirmationToken } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { launchChromium, type Chromium } from './chromium.ts'

const KNOWN = 'p'.repeat(43)

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay
let attacker: Server
let attackerOrigin: string
let chromium: Chromium
/** The login link the attacker's page submits (the attacker's own, for their chat user). */
let target = ''

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
  attacker = createServer((req, res) => {
    void (async () => {
      // Server side: the relay's page for the known cookie, and the genuine token on it.
      const page = await fetch(target, { headers: { cookie: `${BROWSER_COOKIE}=${KNOWN}` } })
      const csrf = findConfirmationToken(await page.text())
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        // Host-only for 127.0.0.1, so the relay's port gets it too: a sibling's Domain cookie.
        'set-cookie': `${BROWSER_COOKIE}=${KNOWN}; Path=/oauth; SameSite=Lax`,
      })
      res.end(`<!doctype html><form method="post" action="${target}"><input type="hidden" name="csrf" value="${csrf}"></form><script>document.forms[0].submit()</script>`)
    })().catch((error: unknown) => res.destroy(error as Error))
  })
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve))
  attackerOrigin = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`
  chromium = await launchChromium()
}, 60_000)

afterAll(async () => {
  await chromium?.close()
  attacker?.closeAllConnections()
  await new Promise((resolve) => attacker?.close(resolve))
  await relay?.close()
  await Promise.all([docs?.close(), as?.close()])
})

describe('a cookie planted by a same-site page, with a genuine token for it, in headless Chromium', () => {
  it("the auto-submitted Continue arrives as Sec-Fetch-Site: same-site and is refused; the link still works from the relay's page", async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'mallory', server_id: 'docs' })
    target = status.body.servers[0].login_url
    const page = await chromium.context.newPage()
    try {
      const posted = page.waitForResponse((response) => response.url() === target && response.request().method() === 'POST')
      await page.goto(`${attackerOrigin}/`)
      const response = await posted
      const sent = await response.request().allHeaders()
      expect(sent['sec-fetch-site']).toBe('same-site')
      expect(sent.cookie).toContain(`${BROWSER_COOKIE}=${KNOWN}`)
      expect(response.status()).toBe(403)
      await page.waitForLoadState('load')
      expect(page.url().startsWith(as.url)).toBe(false)
      expect(await page.locator('main').innerText()).toContain('This sign-in was not confirmed')

      // Nothing was used up: the victim's own visit to the link shows the page, and Continue there
      // (same-origin) goes on to the authorization server.
      await chromium.context.clearCookies()
      await page.goto(target)
      const own = page.waitForRequest((request) => request.method() === 'POST' && request.url() === target)
      await Promise.all([page.waitForURL((url) => url.href.startsWith(as.url)), page.click('#continue')])
      expect((await (await own).allHeaders())['sec-fetch-site']).toBe('same-origin')
    } finally {
      await page.close()
    }
  })
})
