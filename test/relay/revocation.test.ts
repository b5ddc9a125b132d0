// RFC 7009 revocation when the relay lets a grant go (DESIGN.md §6, issue 10 item 5): a reset,
// and a sign-in that replaces another account's grant, revoke the old grant at oidc-provider
// (revocation on); a server without revocation_endpoint answers "unsupported"; an authorization
// server that fails or hangs answers false, and the token is out of the store all the same.
import { Writable } from 'node:stream'
import * as oidc from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClientConfiguration } from '../../src/oauth/client-config.ts'
import { resolveServerAuth } from '../../src/relay/sign-in-link.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, signInThroughBrowser, type CookieJar } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

let as: AuthorizationServer
let plainAs: AuthorizationServer
let docs: McpUpstream
let plain: McpUpstream
let relay: TestRelay
const logLines: Array<Record<string, any>> = []

beforeAll(async () => {
  ;[as, plainAs] = await Promise.all([startAuthorizationServer(), startAuthorizationServer({ revocation: false })])
  ;[docs, plain] = await Promise.all([startMcpUpstream({ auth: { issuer: as.issuer } }), startMcpUpstream({ auth: { issuer: plainAs.issuer } })])
  const logStream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line))
      callback()
    },
  })
  relay = await startRelay({
    servers: [
      { server_id: 'docs', mcp_url: docs.url },
      // The same MCP server under another id, with a short timeout: revocation is bounded by it.
      { server_id: 'slow', mcp_url: docs.url, timeout_seconds: 2 },
      { server_id: 'plain', mcp_url: plain.url },
    ],
    env: { OAUTH_TRUSTED_HOSTS: `${new URL(as.url).host},${new URL(plainAs.url).host}`, LOG_LEVEL: 'info' },
    logStream,
  })
}, 30_000)

afterAll(async () => {
  await relay?.close()
  await Promise.all([docs?.close(), plain?.close()])
  await Promise.all([as?.close(), plainAs?.close()])
})

const owner = (userId: string, serverId = 'docs') => ({ tenant: 'default', userId, serverId })

async function signIn(userId: string, serverId: string, account: string, options: { jar?: CookieJar; forceReauth?: boolean } = {}) {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: serverId, force_reauth: options.forceReauth ?? false })
  expect(status.body.servers[0].status).toBe('need_auth')
  const page = await signInThroughBrowser(status.body.servers[0].login_url, account, { jar: options.jar ?? createCookieJar() })
  expect(page.status, page.html).toBe(200)
  const token = await relay.deps.tokens.get(owner(userId, serverId))
  expect(token?.refreshToken).toBeTruthy()
  return token!
}

/** A refresh_token grant sent straight to the authorization server, as the relay's client: 'ok' or the OAuth error. */
async function refreshDirectly(serverId: string, refreshToken: string): Promise<string> {
  const { auth, client } = await resolveServerAuth(relay.deps, relay.deps.config.servers.get(serverId)!)
  const config = createClientConfiguration(relay.deps.oauth, auth, client)
  try {
    await oidc.refreshTokenGrant(config, refreshToken, { resource: auth.resource })
    return 'ok'
  } catch (error) {
    return error instanceof oidc.ResponseBodyError ? error.error : String(error)
  }
}

async function reset(userId: string, serverId?: string) {
  const answer = await relay.post('/oauth/reset', { user_id: userId, ...(serverId ? { server_id: serverId } : {}) })
  expect(answer.status).toBe(200)
  return answer.body
}

const revocationLines = (userId: string) => logLines.filter((line) => line.event === 'revocation' && line.userId === userId)

async function waitForRevocationLine(userId: string): Promise<Record<string, any>> {
  const giveUpAt = Date.now() + 10_000
  while (revocationLines(userId).length === 0) {
    if (Date.now() > giveUpAt) throw new Error(`no revocation line for ${userId} within 10 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return revocationLines(userId)[0]!
}

describe('revocation', () => {
  it('reset revokes the grant: the old refresh token is refused by the authorization server', async () => {
    const alice = await signIn('alice', 'docs', 'alice')
    const bob = await signIn('bob', 'docs', 'bob')

    const answer = await reset('alice', 'docs')
    expect(answer).toMatchObject({ user_id: 'alice', deleted_server_ids: ['docs'], servers: [{ server_id: 'docs', revoked: true }] })
    expect(await relay.deps.tokens.get(owner('alice'))).toBeUndefined()
    expect(await refreshDirectly('docs', alice.refreshToken!)).toBe('invalid_grant')
    // The same request with a grant nobody reset still works: the refusal above is the revocation's doing.
    expect(await refreshDirectly('docs', bob.refreshToken!)).toBe('ok')
    expect(revocationLines('alice')).toEqual([expect.objectContaining({ tenant: 'default', serverId: 'docs', revoked: true })])
  })

  it('answers "unsupported" for a server whose metadata has no revocation_endpoint, and deletes the token', async () => {
    await signIn('dora', 'plain', 'dora')
    const answer = await reset('dora')
    expect(answer.servers).toEqual([{ server_id: 'plain', revoked: 'unsupported' }])
    expect(await relay.deps.tokens.get(owner('dora', 'plain'))).toBeUndefined()
  })

  it('answers false when the revocation endpoint fails (503), and the token is gone from the store anyway', async () => {
    const erin = await signIn('erin', 'docs', 'erin')
    as.failRevocationEndpoint(503)
    try {
      const answer = await reset('erin', 'docs')
      expect(answer.servers).toEqual([{ server_id: 'docs', revoked: false }])
    } finally {
      as.failRevocationEndpoint(undefined)
    }
    expect(as.revocationRequests.at(-1)).toEqual({ answered: 503 })
    expect(await relay.deps.tokens.get(owner('erin'))).toBeUndefined()
    // false is the truth: the grant lives on at the authorization server.
    expect(await refreshDirectly('docs', erin.refreshToken!)).toBe('ok')
  })

  it('answers false when the revocation endpoint does not answer within the server timeout, and the token is gone anyway', async () => {
    await signIn('finn', 'slow', 'finn')
    as.failRevocationEndpoint('hang')
    try {
      const answer = await reset('finn', 'slow')
      expect(answer.servers).toEqual([{ server_id: 'slow', revoked: false }])
    } finally {
      as.failRevocationEndpoint(undefined)
    }
    expect(await relay.deps.tokens.get(owner('finn', 'slow'))).toBeUndefined()
    expect(revocationLines('finn')).toEqual([expect.objectContaining({ serverId: 'slow', revoked: false })])
  })

  it('force_reauth completed as another account revokes the replaced grant once the new one is stored', async () => {
    const before = await signIn('gus', 'docs', 'gus-personal')
    const after = await signIn('gus', 'docs', 'gus-work', { forceReauth: true })
    expect(after.refreshToken).not.toBe(before.refreshToken)

    expect(await waitForRevocationLine('gus')).toMatchObject({ serverId: 'docs', revoked: true })
    expect(await refreshDirectly('docs', before.refreshToken!)).toBe('invalid_grant')
    const whoami = await relay.post('/tools/call-tool', { user_id: 'gus', tool_ref: 'docs::whoami', input: {} })
    expect(whoami.body).toMatchObject({ ok: true, result: { structuredContent: { sub: 'gus-work' } } })
    expect(await refreshDirectly('docs', after.refreshToken!)).toBe('ok')
  })

  it('a second sign-in to the same account in the same browser keeps the old grant, which the new tokens share', async () => {
    const jar = createCookieJar()
    const before = await signIn('hana', 'docs', 'hana', { jar })
    const after = await signIn('hana', 'docs', 'hana', { jar, forceReauth: true })
    expect(after.refreshToken).not.toBe(before.refreshToken)

    expect(await waitForRevocationLine('hana')).toMatchObject({ serverId: 'docs', revoked: false, reason: expect.stringContaining('same account') })
    expect(await refreshDirectly('docs', after.refreshToken!)).toBe('ok')
    // Why it was kept: oidc-provider issued the new tokens under the old grant, so revoking the
    // old refresh token now signs the new sign-in out too.
    const newest = (await relay.deps.tokens.get(owner('hana')))!
    const { auth, client } = await resolveServerAuth(relay.deps, relay.deps.config.servers.get('docs')!)
    await oidc.tokenRevocation(createClientConfiguration(relay.deps.oauth, auth, client), before.refreshToken!, { token_type_hint: 'refresh_token' })
    expect(await refreshDirectly('docs', newest.refreshToken!)).not.toBe('ok')
  })
})
