import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, followToCallback, openInBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

// RFC 9207 §2.4: oidc-provider advertises authorization_response_iss_parameter_supported and
// sends `iss` on every authorization response; the relay must refuse a response whose `iss` is
// not the issuer the flow started with, or that lacks it (a mix-up attack), before the code is
// exchanged, and store nothing.

let as: AuthorizationServer
let upstream: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer()
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

const CASES: Array<{ name: string; tamper: (params: URLSearchParams) => void; status: number }> = [
  { name: 'another issuer', tamper: (params) => params.set('iss', 'https://attacker.example.com'), status: 400 },
  { name: 'the issuer with a different path', tamper: (params) => params.set('iss', `${as.issuer}/other`), status: 400 },
  { name: 'no iss at all', tamper: (params) => params.delete('iss'), status: 400 },
  { name: 'the right issuer (control)', tamper: () => undefined, status: 200 },
]

describe('RFC 9207 iss on the callback', () => {
  it.each(CASES)('$name → HTTP $status', async ({ name, tamper, status }) => {
    const userId = `iss-${name.replace(/\W+/g, '-')}`
    const asked = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })
    expect(asked.body.error_code).toBe('NOT_AUTHORIZED')

    const jar = createCookieJar()
    const callback = new URL(await followToCallback(asked.body.login_url, userId, { jar }))
    expect(callback.searchParams.get('iss')).toBe(as.issuer)
    tamper(callback.searchParams)
    const page = await openInBrowser(callback.href, jar)
    expect(page.status).toBe(status)
    const exchanges = as.tokenRequests.filter((request) => request.grantType === 'authorization_code' && request.accountId === userId)

    const after = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })
    if (status === 200) {
      expect(exchanges).toHaveLength(1)
      expect(after.body).toMatchObject({ ok: true, result: { structuredContent: { sub: userId } } })
    } else {
      // The code was never sent to the token endpoint, and no token was stored.
      expect(exchanges).toEqual([])
      expect(await page.text()).toContain('Sign-in')
      expect(after.body.error_code).toBe('NOT_AUTHORIZED')
    }
  })
})
