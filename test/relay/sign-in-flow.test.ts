import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, findConfirmationToken, followToCallback, openInBrowser, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'

let as: AuthorizationServer
let docs: McpUpstream
let open: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  open = await startMcpUpstream()
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Internal docs', mcp_url: docs.url },
      { server_id: 'open', description: 'Open server', mcp_url: open.url },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([docs?.close(), open?.close(), as?.close()])
})

async function signIn(userId: string, account: string, options: { apiKey?: string } = {}) {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs' }, options)
  expect(status.body.servers[0].status).toBe('need_auth')
  const page = await signInThroughBrowser(status.body.servers[0].login_url, account)
  expect(page.status).toBe(200)
  return page
}

async function whoami(userId: string, options: { apiKey?: string } = {}) {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} }, options)
  expect(answer.status).toBe(200)
  return answer.body
}

describe('sign-in flow against oidc-provider and an SDK MCP server', () => {
  it('tells a new user which servers need sign-in, with a reusable login link', async () => {
    const first = await relay.post('/tools/auth-status', { user_id: 'newcomer' })
    expect(first.status).toBe(200)
    expect(first.body.all_authorized).toBe(false)
    expect(first.body.need_auth_server_ids).toEqual(['docs'])
    const [docsEntry, openEntry] = first.body.servers
    expect(docsEntry).toMatchObject({ server_id: 'docs', description: 'Internal docs', status: 'need_auth' })
    expect(docsEntry.login_url).toMatch(new RegExp(`^${relay.url}/oauth/start/[A-Za-z0-9_-]{43}$`))
    expect(openEntry).toMatchObject({ server_id: 'open', status: 'no_auth_required' })

    const again = await relay.post('/tools/auth-status', { user_id: 'newcomer', server_ids: 'docs' })
    expect(again.body.servers[0].login_url).toBe(docsEntry.login_url)
  })

  it('signs two users in as themselves and calls tools with their own tokens', async () => {
    const alicePage = await signIn('alice', 'alice')
    expect(alicePage.html).toContain('Internal docs')
    expect(alicePage.headers.get('content-security-policy')).toContain("default-src 'none'")
    expect(alicePage.headers.get('referrer-policy')).toBe('no-referrer')
    expect(alicePage.headers.get('cache-control')).toContain('no-store')
    await signIn('bob', 'bob')

    const status = await relay.post('/tools/auth-status', { user_id: 'alice' })
    expect(status.body.all_authorized).toBe(true)
    expect(status.body.authorized_server_ids).toEqual(['docs'])

    const tools = await relay.post('/tools/list-tools', { user_id: 'alice' })
    expect(tools.status).toBe(200)
    const refs = tools.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)
    expect(refs).toEqual(expect.arrayContaining(['docs::whoami', 'docs::echo', 'open::whoami']))
    expect(tools.body.auth_required).toEqual([])

    const alice = await whoami('alice')
    expect(alice.ok).toBe(true)
    expect(alice.result.structuredContent.sub).toBe('alice')
    expect(alice.result.structuredContent.aud).toContain(docs.url)
    const bob = await whoami('bob')
    expect(bob.result.structuredContent.sub).toBe('bob')

    const echo = await relay.post('/tools/call-tool', { user_id: 'bob', tool_ref: 'docs::echo', input: '{"text":"hi"}' })
    expect(echo.body).toMatchObject({ ok: true, tool_ref: 'docs::echo', result: { isError: false } })
    expect(JSON.stringify(echo.body.result.content)).toContain('hi')
  })

  it('keeps tenants apart: the same user_id under another API key is another user', async () => {
    const other = await relay.post('/tools/call-tool', { user_id: 'alice', tool_ref: 'docs::whoami', input: {} }, { apiKey: OTHER_TENANT_KEY })
    expect(other.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: 'docs' })
    await signIn('alice', 'mallory', { apiKey: OTHER_TENANT_KEY })
    expect((await whoami('alice', { apiKey: OTHER_TENANT_KEY })).result.structuredContent.sub).toBe('mallory')
    expect((await whoami('alice')).result.structuredContent.sub).toBe('alice')
  })

  it('never hands the cached tool list to a user who has not signed in', async () => {
    const tools = await relay.post('/tools/list-tools', { user_id: 'stranger', server_id: 'docs' })
    expect(tools.body.tools).toEqual([])
    expect(tools.body.auth_required).toEqual([
      expect.objectContaining({ server_id: 'docs', status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') }),
    ])
  })

  it('force_reauth switches the account behind a signed-in user', async () => {
    await signIn('switcher', 'first-account')
    expect((await whoami('switcher')).result.structuredContent.sub).toBe('first-account')
    const forced = await relay.post('/tools/auth-status', { user_id: 'switcher', server_id: 'docs', force_reauth: 'true' })
    expect(forced.body.servers[0].status).toBe('need_auth')
    const page = await signInThroughBrowser(forced.body.servers[0].login_url, 'second-account')
    expect(page.status).toBe(200)
    expect((await whoami('switcher')).result.structuredContent.sub).toBe('second-account')
  })

  it('reset removes one user\'s tokens and nobody else\'s', async () => {
    await signIn('resetter', 'resetter')
    await signIn('bystander', 'bystander')
    const reset = await relay.post('/oauth/reset', { user_id: 'resetter', server_id: 'docs' })
    expect(reset.status).toBe(200)
    expect(reset.body.deleted_server_ids).toEqual(['docs'])
    expect((await whoami('resetter')).error_code).toBe('NOT_AUTHORIZED')
    expect((await whoami('bystander')).result.structuredContent.sub).toBe('bystander')
    const again = await relay.post('/oauth/reset', { user_id: 'resetter' })
    expect(again.body.deleted_server_ids).toEqual([])
  })

  it('refuses a login link twice, and a callback with a used, forged or missing state, or from another browser', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'replayer', server_id: 'docs' })
    const loginUrl = status.body.servers[0].login_url
    const jar = createCookieJar()
    const callbackUrl = await followToCallback(loginUrl, 'replayer', { jar })

    // Used at Continue: the page and the form both answer the 4xx page now.
    const reused = await openInBrowser(loginUrl, jar)
    expect(reused.status).toBe(404)
    expect(await reused.text()).toContain('This sign-in link does not work')

    const forged = new URL(callbackUrl)
    forged.searchParams.set('state', 'forged-state-value')
    const forgedPage = await openInBrowser(forged.href, jar)
    expect(forgedPage.status).toBe(400)

    const missing = await openInBrowser(`${relay.url}/oauth/callback?code=abc`, jar)
    expect(missing.status).toBe(400)

    // Another browser (no cookie, or its own) changes nothing, and does not use the flow up.
    const elsewhere = await fetch(callbackUrl, { redirect: 'manual' })
    expect(elsewhere.status).toBe(400)
    expect(await elsewhere.text()).toContain('This sign-in was started in another browser.')
    expect((await whoami('replayer')).error_code).toBe('NOT_AUTHORIZED')

    const first = await openInBrowser(callbackUrl, jar)
    expect(first.status).toBe(200)
    const replayed = await openInBrowser(callbackUrl, jar)
    expect(replayed.status).toBe(400)
    expect(replayed.headers.get('location')).toBeNull()
    expect((await whoami('replayer')).result.structuredContent.sub).toBe('replayer')
  })

  it('Continue without the page\'s CSRF token or cookie is a 403 page and uses nothing up', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'csrf-target', server_id: 'docs' })
    const loginUrl = status.body.servers[0].login_url
    const jar = createCookieJar()
    const page = await openInBrowser(loginUrl, jar)
    expect(page.status).toBe(200)
    const csrf = findConfirmationToken(await page.text())!
    const post = (headers: Record<string, string>, body: string) =>
      fetch(loginUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body, redirect: 'manual' })
    const cookie = jar.header(new URL(loginUrl))!
    // A forged form from another site: no cookie (SameSite=Lax keeps it off a cross-site POST), or
    // the right cookie with a token it guessed, or none.
    for (const [headers, body] of [
      [{ origin: 'https://evil.example' }, `csrf=${csrf}`],
      [{ cookie }, `csrf=${'A'.repeat(43)}`],
      [{ cookie }, ''],
    ] as const) {
      const refused = await post(headers, body)
      expect(refused.status).toBe(403)
      expect(refused.headers.get('location')).toBeNull()
      expect(await refused.text()).toContain('This sign-in was not confirmed')
    }
    // The link is still live: the real page's form goes on to the authorization server.
    const accepted = await post({ cookie, origin: 'null' }, `csrf=${csrf}`)
    expect(accepted.status).toBe(302)
    expect(new URL(accepted.headers.get('location')!).origin).toBe(as.url)
  })

  it('shows an error page for error= and stores nothing', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'refuser', server_id: 'docs' })
    const jar = createCookieJar()
    const callbackUrl = new URL(await followToCallback(status.body.servers[0].login_url, 'refuser', { jar }))
    callbackUrl.searchParams.delete('code')
    callbackUrl.searchParams.set('error', 'access_denied')
    callbackUrl.searchParams.set('error_description', '<script>alert(1)</script>')
    const page = await openInBrowser(callbackUrl.href, jar)
    expect(page.status).toBe(400)
    const html = await page.text()
    expect(html).not.toContain('<script>')
    expect(html).toContain('&lt;script&gt;')
    expect((await whoami('refuser')).error_code).toBe('NOT_AUTHORIZED')
  })
})
