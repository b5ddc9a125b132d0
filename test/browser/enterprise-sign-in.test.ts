// The sign-in with the organization account (grant_type "enterprise") in a real browser: headless
// Chromium opens the one login link the enterprise servers share, sees the relay's confirmation
// page naming them and the identity provider, presses Continue, signs in at the provider's page
// (oidc-provider), and lands on the relay's callback page; both servers are then authorized.
// The provider's callback, replayed in another browser, connects nothing.
import { randomUUID } from 'node:crypto'
import type { Page } from 'playwright-core'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer, type ClientMetadata } from '../peers/authorization-server.ts'
import { idJagIssuer, JWT_BEARER, jwtBearerGrant, TOKEN_EXCHANGE } from '../peers/extension-grants.ts'
import { createCookieJar, openInBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { freePort } from '../support/free-port.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { launchChromium, type Chromium } from './chromium.ts'

const IDP_SECRET = `idp-${randomUUID()}`
const CRM_SECRET = `crm-${randomUUID()}`
const DOCS_SECRET = `docs-${randomUUID()}`
const client = (clientId: string, secret: string): ClientMetadata => ({
  client_id: clientId, client_secret: secret, grant_types: [JWT_BEARER], response_types: [], redirect_uris: [],
})

let idp: AuthorizationServer
let crmAs: AuthorizationServer
let docsAs: AuthorizationServer
let crm: McpUpstream
let docs: McpUpstream
let relay: TestRelay
let browser: Chromium

beforeAll(async () => {
  const port = await freePort()
  const trusted: string[] = []
  const crmGrant = jwtBearerGrant({ idJagIssuers: trusted })
  const docsGrant = jwtBearerGrant({ idJagIssuers: trusted })
  ;[crmAs, docsAs] = await Promise.all([
    startAuthorizationServer({ clients: [client('relay-at-crm', CRM_SECRET)], extend: crmGrant.extend, dpop: {} }),
    startAuthorizationServer({ clients: [client('relay-at-docs', DOCS_SECRET)], extend: docsGrant.extend }),
  ])
  const idJags = idJagIssuer({ clientIds: { [crmAs.issuer]: 'relay-at-crm', [docsAs.issuer]: 'relay-at-docs' } })
  idp = await startAuthorizationServer({
    extend: idJags.extend,
    clients: [{
      client_id: 'relay-at-idp', client_secret: IDP_SECRET, response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE], redirect_uris: [`http://127.0.0.1:${port}/oauth/callback`],
    }],
  })
  trusted.push(idp.issuer)
  ;[crm, docs] = await Promise.all([startMcpUpstream({ auth: { issuer: crmAs.issuer } }), startMcpUpstream({ auth: { issuer: docsAs.issuer } })])
  relay = await startRelay({
    servers: [
      { server_id: 'crm', description: 'CRM', mcp_url: crm.url, grant_type: 'enterprise', client_id: 'relay-at-crm', client_secret: CRM_SECRET },
      { server_id: 'docs', description: 'Internal docs', mcp_url: docs.url, grant_type: 'enterprise', client_id: 'relay-at-docs', client_secret: DOCS_SECRET },
    ],
    identityProvider: { issuer: idp.issuer, client_id: 'relay-at-idp', client_secret: IDP_SECRET },
    env: { PORT: String(port), PUBLIC_BASE_URL: `http://127.0.0.1:${port}`, OAUTH_TRUSTED_HOSTS: [crmAs, docsAs].map((as) => new URL(as.url).host).join(',') },
  })
  browser = await launchChromium()
})

beforeEach(async () => {
  await browser.context.clearCookies()
})

afterAll(async () => {
  await browser?.close()
  await relay?.close()
  await Promise.allSettled([crm, docs, crmAs, docsAs, idp].map((peer) => peer?.close()))
})

async function loginUrlFor(userId: string): Promise<string> {
  const status = await relay.post('/tools/auth-status', { user_id: userId })
  expect(status.body.servers.map((entry: { status: string }) => entry.status)).toEqual(['need_auth', 'need_auth'])
  expect(status.body.servers[0].login_url).toBe(status.body.servers[1].login_url)
  return status.body.servers[0].login_url
}

/** Continue on the confirmation page, then the provider's sign-in form; resolves with the callback's response. */
async function signInAtProvider(page: Page, loginUrl: string, account: string) {
  await page.goto(loginUrl)
  await Promise.all([page.waitForURL((url) => url.href.startsWith(idp.url)), page.click('#continue')])
  await page.fill('#login', account)
  const callback = page.waitForResponse((response) => response.url().startsWith(`${relay.url}/oauth/callback?`))
  await page.click('#submit')
  const response = await callback
  await page.waitForLoadState('load')
  return response
}

describe('the organization sign-in in headless Chromium', () => {
  it('names every enterprise server and the provider, signs in once at the provider, and connects them all', async () => {
    const loginUrl = await loginUrlFor('ivan')
    const page = await browser.context.newPage()
    try {
      const confirmation = await page.goto(loginUrl)
      expect(confirmation?.status()).toBe(200)
      const provider = new URL(idp.issuer).host
      expect(await page.title()).toBe(`Connect CRM, Internal docs (organization account at ${provider})? · MCP Auth Relay`)
      const text = await page.locator('main').innerText()
      expect(text).toContain(`Server\nCRM, Internal docs (organization account at ${provider})`)
      expect(text).toContain('Chat user\nivan')

      const response = await signInAtProvider(page, loginUrl, 'ivan')
      expect(response.status()).toBe(200)
      expect(await page.locator('h1').innerText()).toBe('Signed in')
      expect(await page.locator('main').innerText()).toContain(`CRM, Internal docs (organization account at ${provider}) is now connected.`)
      const html = await page.content()
      const query = new URL(page.url()).searchParams
      for (const secret of [query.get('code'), query.get('state')]) expect(html).not.toContain(secret!)
    } finally {
      await page.close()
    }
    const status = await relay.post('/tools/auth-status', { user_id: 'ivan' })
    expect(status.body.servers).toEqual([
      expect.objectContaining({ server_id: 'crm', status: 'authorized', auth: 'enterprise' }),
      expect.objectContaining({ server_id: 'docs', status: 'authorized', auth: 'enterprise' }),
    ])
    const call = await relay.post('/tools/call-tool', { user_id: 'ivan', tool_ref: 'docs::whoami', input: {} })
    expect(call.body.result.structuredContent.sub).toBe('ivan')
  })

  it('connects nothing when the provider\'s callback is replayed in another browser, and still completes in this one', async () => {
    const loginUrl = await loginUrlFor('judy')
    const page = await browser.context.newPage()
    try {
      await page.goto(loginUrl)
      await Promise.all([page.waitForURL((url) => url.href.startsWith(idp.url)), page.click('#continue')])
      await page.fill('#login', 'judy')
      // Hold the browser just before the callback (Playwright does not route redirects: the
      // provider's redirects after its form are followed by this context's request client).
      let callbackUrl: string | undefined
      const isLogin = (url: URL) => url.origin === idp.url && url.pathname.endsWith('/login')
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

      const replayed = await openInBrowser(callbackUrl!, createCookieJar())
      expect(replayed.status).toBe(400)
      expect(await replayed.text()).toContain('This sign-in was started in another browser.')
      expect(await relay.deps.identities.get({ tenant: 'default', userId: 'judy' })).toBeUndefined()

      // The browser that pressed Continue still completes it.
      const completed = await page.goto(callbackUrl!)
      expect(completed?.status()).toBe(200)
      expect(await page.locator('h1').innerText()).toBe('Signed in')
      expect(await relay.deps.identities.get({ tenant: 'default', userId: 'judy' })).toMatchObject({ subject: 'judy' })
    } finally {
      await page.close()
    }
  })
})
