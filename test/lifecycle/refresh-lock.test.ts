// The refresh's own single-flight and lease, in one process: a lease found lost aborts the token
// request before another replica can send the same refresh token, and two relays in one process
// never share a refresh.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { refreshUpstreamToken, TransientRefreshError } from '../../src/oauth/refresh.ts'
import { resolveServerAuth } from '../../src/relay/sign-in-link.ts'
import type { StoreLock } from '../../src/store/lock.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { ACCESS_TOKEN_TTL_SECONDS, waitForExpiry, waitUntil } from './lifecycle-peers.ts'

let as: AuthorizationServer
let docs: McpUpstream
let one: TestRelay
let two: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer({ accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS })
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  const options = { servers: [{ server_id: 'docs', mcp_url: docs.url }], env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host } }
  ;[one, two] = await Promise.all([startRelay(options), startRelay(options)])
})

afterAll(async () => {
  as?.delayTokenEndpoint(undefined)
  await Promise.all([one?.close(), two?.close()])
  await Promise.all([docs?.close(), as?.close()])
})

async function signIn(relay: TestRelay, userId: string, account: string): Promise<void> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs' })
  expect((await signInThroughBrowser(status.body.servers[0].login_url, account)).status).toBe(200)
}

async function whoami(relay: TestRelay, userId: string): Promise<unknown> {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })
  return answer.body.ok ? answer.body.result.structuredContent.sub : answer.body
}

describe('the refresh lock', () => {
  it('aborts the token request when the lease is lost, keeping the token and its refresh token unused', async () => {
    const owner = { tenant: 'default', userId: 'leaseholder', serverId: 'docs' }
    await signIn(one, 'leaseholder', 'leaseholder')
    const stale = (await one.deps.tokens.get(owner))!
    await waitForExpiry()

    // Only the failure is faked: renewals report the lease gone (another replica took it over).
    const losing: StoreLock = { ...one.deps.oauth.lock, renew: async () => false }
    as.delayTokenEndpoint(20_000)
    const server = one.deps.config.servers.get('docs')!
    const refreshing = refreshUpstreamToken({ ...one.deps.oauth, lock: losing }, owner, stale, () => resolveServerAuth(one.deps, server))
    await waitUntil('the refresh to reach the authorization server', () => as.heldTokenRequests() === 1)
    await expect(refreshing).rejects.toBeInstanceOf(TransientRefreshError)
    // The relay hung up, so the authorization server never read the request.
    await waitUntil('the held request to be dropped', () => as.heldTokenRequests() === 0)
    as.delayTokenEndpoint(undefined)
    expect(as.tokenRequests.at(-1)).toMatchObject({ ok: false, error: 'client_gone' })
    expect(await one.deps.tokens.get(owner)).toEqual(stale)

    expect(await whoami(one, 'leaseholder')).toBe('leaseholder')
    expect(as.refreshCount('leaseholder')).toBe(1)
  }, 30_000)

  it('lets a reset during a refresh stand: the refresh does not store its token after the removal', async () => {
    await signIn(one, 'resetee', 'resetee')
    await waitForExpiry()
    as.delayTokenEndpoint(1000)
    const call = whoami(one, 'resetee')
    await waitUntil('the refresh to reach the authorization server', () => as.heldTokenRequests() === 1)
    as.delayTokenEndpoint(undefined)
    const reset = await one.post('/oauth/reset', { user_id: 'resetee', server_id: 'docs' })
    expect(reset.body.deleted_server_ids).toEqual(['docs'])
    expect(await call).toBe('resetee')
    expect(await whoami(one, 'resetee')).toMatchObject({ ok: false, status: 'need_auth' })
    expect(await one.deps.tokens.get({ tenant: 'default', userId: 'resetee', serverId: 'docs' })).toBeUndefined()
  }, 30_000)

  it('keeps a sign-in that completes during a refresh: the refresh does not store the old grant over it', async () => {
    await signIn(one, 'switcher', 'first-account')
    await waitForExpiry()
    as.delayTokenEndpoint(1500)
    const call = whoami(one, 'switcher')
    await waitUntil('the refresh to reach the authorization server', () => as.heldTokenRequests() === 1)
    as.delayTokenEndpoint(undefined)
    // Meanwhile the user signs in again as another account (force_reauth), done before the refresh.
    const forced = await one.post('/tools/auth-status', { user_id: 'switcher', server_id: 'docs', force_reauth: true })
    expect((await signInThroughBrowser(forced.body.servers[0].login_url, 'second-account')).status).toBe(200)
    expect(await call).toBe('first-account')
    expect(await whoami(one, 'switcher')).toBe('second-account')
  }, 30_000)

  it('keeps refreshes of two relays in one process apart, for the same user id', async () => {
    await signIn(one, 'twin', 'twin-one')
    await signIn(two, 'twin', 'twin-two')
    await waitForExpiry()
    const [seenByOne, seenByTwo] = await Promise.all([whoami(one, 'twin'), whoami(two, 'twin')])
    expect({ seenByOne, seenByTwo }).toEqual({ seenByOne: 'twin-one', seenByTwo: 'twin-two' })
    expect(as.refreshCount('twin-one')).toBe(1)
    expect(as.refreshCount('twin-two')).toBe(1)
  }, 30_000)
})
