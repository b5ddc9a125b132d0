import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, pressContinue, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

// MCP 2025-11-25 Authorization, "Step-Up Authorization Flow" and "Scope Challenge Handling": a
// 403 insufficient_scope gets a login link for the granted plus the required scopes; a server
// that keeps asking for more gets an error on the third step-up instead of another link, so an
// agent cannot loop the user through sign-in pages (DESIGN.md §5).

let as: AuthorizationServer
let upstream: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer({ scopes: ['mcp:read', 'mcp:write', 'docs:a', 'docs:b', 'docs:c', 'offline_access'] })
  upstream = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', mcp_url: upstream.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([upstream?.close(), as?.close()])
})

const echo = (userId: string) => relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::echo', input: { text: 'hello' } })

/** Opens the login link as a browser does; returns the scope the authorization request asked for. */
async function signIn(loginUrl: string, account: string): Promise<string[]> {
  const jar = createCookieJar()
  const start = await pressContinue(loginUrl, { jar })
  expect(start.status).toBe(302)
  const authorizationUrl = start.headers.get('location')!
  const page = await signInThroughBrowser(authorizationUrl, account, { jar })
  expect(page.status).toBe(200)
  return new URL(authorizationUrl).searchParams.get('scope')!.split(' ').sort()
}

describe('step-up sign-in', () => {
  it('asks for the union of granted and required scopes, twice, then answers an error instead of a third link', async () => {
    upstream.setScopesRequiredFor('echo', [])
    const first = await echo('sam')
    expect(first.body.error_code).toBe('NOT_AUTHORIZED')
    // The first sign-in: the protected-resource metadata's scopes_supported, and offline_access,
    // which the authorization server lists (SEP-2207).
    expect(await signIn(first.body.login_url, 'sam')).toEqual(['mcp:read', 'mcp:write', 'offline_access'])
    expect((await echo('sam')).body.ok).toBe(true)

    upstream.setScopesRequiredFor('echo', ['docs:a'])
    const stepUp1 = await echo('sam')
    expect(stepUp1.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', message: expect.stringContaining('docs:a') })
    // Asking again before the user signed in is the same step-up: the same link, not a second attempt.
    expect((await echo('sam')).body.login_url).toBe(stepUp1.body.login_url)
    expect(await signIn(stepUp1.body.login_url, 'sam')).toEqual(['docs:a', 'mcp:read', 'mcp:write', 'offline_access'])
    expect((await echo('sam')).body.ok).toBe(true)

    upstream.setScopesRequiredFor('echo', ['docs:b'])
    const stepUp2 = await echo('sam')
    expect(stepUp2.body.error_code).toBe('NOT_AUTHORIZED')
    expect(await signIn(stepUp2.body.login_url, 'sam')).toEqual(['docs:a', 'docs:b', 'mcp:read', 'mcp:write', 'offline_access'])
    expect((await echo('sam')).body.ok).toBe(true)

    upstream.setScopesRequiredFor('echo', ['docs:c'])
    const third = await echo('sam')
    expect(third.status).toBe(200)
    expect(third.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', message: expect.stringMatching(/keeps asking for more scopes \(docs:c\)/) })
    expect(third.body.login_url).toBeUndefined()
    // Still an error on the next call: the limit holds until the window passes.
    expect((await echo('sam')).body.error_code).toBe('UPSTREAM_ERROR')
    // The user's sign-in itself is intact: tools that need no more scope still work.
    expect((await relay.post('/tools/call-tool', { user_id: 'sam', tool_ref: 'docs::whoami', input: {} })).body.ok).toBe(true)
  })

  it('counts step-ups per user: another user still gets a link', async () => {
    upstream.setScopesRequiredFor('echo', ['docs:c'])
    const first = await echo('tess')
    await signIn(first.body.login_url, 'tess')
    const stepUp = await echo('tess')
    expect(stepUp.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', login_url: expect.stringContaining('/oauth/start/') })
  })
})

describe('step-up with SIGN_IN_CONFIRMATION=code', () => {
  it('a step-up sign-in waiting for its code answers pending_confirmation, not another link; the old token still serves', async () => {
    const codeRelay = await startRelay({
      servers: [{ server_id: 'docs', mcp_url: upstream.url }],
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, SIGN_IN_CONFIRMATION: 'code' },
    })
    try {
      const call = (tool: string) => codeRelay.post('/tools/call-tool', { user_id: 'uri', tool_ref: `docs::${tool}`, input: tool === 'echo' ? { text: 'hi' } : {} })
      /** Signs in through the link; returns the confirmation code the page showed. */
      const signInForCode = async (loginUrl: string) => {
        const page = await signInThroughBrowser(loginUrl, 'uri')
        expect(page.status).toBe(200)
        return /id="confirmation-code">([^<]+)</.exec(page.html)![1]!
      }
      const confirm = (code: string) => codeRelay.post('/tools/auth-status', { user_id: 'uri', server_id: 'docs', confirm_code: code })

      upstream.setScopesRequiredFor('echo', [])
      const first = await call('echo')
      expect((await confirm(await signInForCode(first.body.login_url))).body.servers[0].status).toBe('authorized')
      expect((await call('echo')).body.ok).toBe(true)

      upstream.setScopesRequiredFor('echo', ['docs:a'])
      const stepUp = await call('echo')
      expect(stepUp.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', login_url: expect.stringContaining('/oauth/start/') })
      const code = await signInForCode(stepUp.body.login_url)
      const waiting = await call('echo')
      expect(waiting.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', pending_confirmation: true })
      expect(waiting.body).not.toHaveProperty('login_url')
      // Until the code is given, the token it would replace keeps serving what it may.
      expect((await call('whoami')).body.ok).toBe(true)
      expect((await confirm(code)).body.servers[0].status).toBe('authorized')
      expect((await call('echo')).body.ok).toBe(true)
    } finally {
      await codeRelay.close()
    }
  })
})
