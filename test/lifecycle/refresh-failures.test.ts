// How a refused or failed refresh is classified: a transient failure (the token endpoint answers
// 503) keeps the token and answers a clear error; a refusal for good (invalid_grant, here from
// replaying a rotated refresh token, which revokes the grant) removes it and asks for sign-in.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { withUpstream } from '../../src/relay/upstream-access.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { ACCESS_TOKEN_TTL_SECONDS, waitForExpiry } from './lifecycle-peers.ts'

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer({ accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS, rotateRefreshTokens: true })
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
})

afterAll(async () => {
  as?.failTokenEndpoint(undefined)
  await relay?.close()
  await Promise.all([docs?.close(), as?.close()])
})

const owner = (userId: string) => ({ tenant: 'default', userId, serverId: 'docs' })

async function signIn(userId: string): Promise<void> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs' })
  const page = await signInThroughBrowser(status.body.servers[0].login_url, userId)
  expect(page.status, page.html).toBe(200)
}

async function whoami(userId: string): Promise<any> {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })
  expect(answer.status).toBe(200)
  return answer.body
}

describe('classified refresh failures', () => {
  it('keeps the token through a 503 from the token endpoint and answers a transient error', async () => {
    await signIn('patient')
    const stored = await relay.deps.tokens.get(owner('patient'))
    await waitForExpiry()

    as.failTokenEndpoint(503)
    try {
      for (let i = 0; i < 2; i++) {
        const answer = await whoami('patient')
        expect(answer).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: 'docs::whoami' })
        expect(answer.message).toMatch(/HTTP 503/)
        expect(answer.message).toMatch(/sign-in is kept; try again shortly/)
        expect(answer).not.toHaveProperty('login_url')
      }
    } finally {
      as.failTokenEndpoint(undefined)
    }
    expect(await relay.deps.tokens.get(owner('patient'))).toEqual(stored)

    const recovered = await whoami('patient')
    expect(recovered).toMatchObject({ ok: true, result: { structuredContent: { sub: 'patient' } } })
    expect(as.refreshCount('patient')).toBe(1)
  })

  it('removes the token and answers need_auth with a login link when the grant is gone (invalid_grant)', async () => {
    await signIn('replayed')
    const beforeRotation = await relay.deps.tokens.get(owner('replayed'))
    await waitForExpiry()
    expect(await whoami('replayed')).toMatchObject({ ok: true })
    expect(as.refreshCount('replayed')).toBe(1)

    // The store goes back to the used refresh token (as a restored backup would): the relay's
    // next refresh replays it, oidc-provider answers invalid_grant and revokes the grant.
    await relay.deps.tokens.put(owner('replayed'), beforeRotation!)
    const answer = await whoami('replayed')
    expect(answer).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: 'docs' })
    expect(answer.login_url).toMatch(new RegExp(`^${relay.url}/oauth/start/`))
    expect(as.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token', ok: false, error: 'invalid_grant', accountId: 'replayed' })
    expect(await relay.deps.tokens.get(owner('replayed'))).toBeUndefined()

    // Asking again does not send the dead refresh token a second time.
    const requests = as.tokenRequests.length
    expect(await whoami('replayed')).toMatchObject({ status: 'need_auth', login_url: answer.login_url })
    expect(as.tokenRequests.length).toBe(requests)
    const page = await signInThroughBrowser(answer.login_url, 'replayed')
    expect(page.status).toBe(200)
    expect(await whoami('replayed')).toMatchObject({ ok: true, result: { structuredContent: { sub: 'replayed' } } })
  })

  it('answers need_auth, not a second refresh, when the server refuses a token just refreshed', async () => {
    await signIn('refused')
    const stored = (await relay.deps.tokens.get(owner('refused')))!
    const server = relay.deps.config.servers.get('docs')!
    // Only the failure is faked: the server answers every request of this session with 401.
    const refusing = async () =>
      new Response(null, { status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' } })
    await relay.deps.pool.drop(`default:refused:docs`)
    const access = await withUpstream(
      { ...relay.deps, upstreamFetch: refusing },
      { tenant: 'default', userId: 'refused' },
      server,
      async () => 'unreachable',
      // Believed expired: refreshed before the call (a real refresh at the real server).
      { token: { ...stored, expiresAt: Date.now() } },
    )
    expect(access).toMatchObject({ kind: 'need-auth', loginUrl: expect.stringContaining('/oauth/start/') })
    expect(as.refreshCount('refused')).toBe(1)
    expect(await relay.deps.tokens.get(owner('refused'))).toBeUndefined()
  })
})
