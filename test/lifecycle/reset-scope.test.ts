// POST /oauth/reset keeps its scope on every backend: one user and one server, or one user and
// all servers; never another user, nor the same user_id under another tenant.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { isolatedStore, type IsolatedStore } from '../support/isolated-stores.ts'
import { OTHER_TENANT_KEY, startRelay, TEST_API_KEY, type TestRelay } from '../support/relay.ts'
import { KEY_1 } from './lifecycle-peers.ts'

let as: AuthorizationServer
let docs: McpUpstream
let wiki: McpUpstream

beforeAll(async () => {
  as = await startAuthorizationServer()
  ;[docs, wiki] = await Promise.all([startMcpUpstream({ auth: { issuer: as.issuer } }), startMcpUpstream({ auth: { issuer: as.issuer } })])
})

afterAll(async () => {
  await Promise.all([docs?.close(), wiki?.close()])
  await as?.close()
})

interface Who {
  userId: string
  apiKey: string
  account: string
}

const alice: Who = { userId: 'alice', apiKey: TEST_API_KEY, account: 'alice' }
const bob: Who = { userId: 'bob', apiKey: TEST_API_KEY, account: 'bob' }
// The same user_id in another tenant (another Dify workspace) is another user.
const otherAlice: Who = { userId: 'alice', apiKey: OTHER_TENANT_KEY, account: 'other-alice' }

describe.each(['memory', 'sqlite', 'redis', 'postgres'] as const)('reset on %s', (kind) => {
  let store: IsolatedStore
  let relay: TestRelay

  beforeAll(async () => {
    store = await isolatedStore(kind)
    relay = await startRelay({
      servers: [
        { server_id: 'docs', mcp_url: docs.url },
        { server_id: 'wiki', mcp_url: wiki.url },
      ],
      env: { STORE_URL: store.url, RELAY_ENCRYPTION_KEY: KEY_1, OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    })
  }, 30_000)

  afterAll(async () => {
    await relay?.close()
    await store?.release()
  })

  async function signIn(who: Who, serverId: string): Promise<void> {
    const status = await relay.post('/tools/auth-status', { user_id: who.userId, server_id: serverId }, { apiKey: who.apiKey })
    const page = await signInThroughBrowser(status.body.servers[0].login_url, who.account)
    expect(page.status, page.html).toBe(200)
  }

  /** The sub each server sees for `who`, or 'need_auth'. */
  async function reach(who: Who): Promise<Record<string, string>> {
    const seen: Record<string, string> = {}
    for (const serverId of ['docs', 'wiki']) {
      const answer = await relay.post('/tools/call-tool', { user_id: who.userId, tool_ref: `${serverId}::whoami`, input: {} }, { apiKey: who.apiKey })
      seen[serverId] = answer.body.ok ? answer.body.result.structuredContent.sub : answer.body.status
    }
    return seen
  }

  async function reset(who: Who, serverId?: string): Promise<string[]> {
    const answer = await relay.post('/oauth/reset', { user_id: who.userId, ...(serverId ? { server_id: serverId } : {}) }, { apiKey: who.apiKey })
    expect(answer.status).toBe(200)
    return answer.body.deleted_server_ids
  }

  it('removes one user\'s token for one server, then for all servers, and nobody else\'s', async () => {
    for (const who of [alice, bob, otherAlice]) for (const serverId of ['docs', 'wiki']) await signIn(who, serverId)
    expect(await reach(alice)).toEqual({ docs: 'alice', wiki: 'alice' })

    expect(await reset(alice, 'docs')).toEqual(['docs'])
    expect(await reach(alice)).toEqual({ docs: 'need_auth', wiki: 'alice' })
    expect(await reach(bob)).toEqual({ docs: 'bob', wiki: 'bob' })
    expect(await reach(otherAlice)).toEqual({ docs: 'other-alice', wiki: 'other-alice' })

    expect(await reset(alice)).toEqual(['wiki'])
    expect(await reach(alice)).toEqual({ docs: 'need_auth', wiki: 'need_auth' })
    expect(await reach(bob)).toEqual({ docs: 'bob', wiki: 'bob' })
    expect(await reach(otherAlice)).toEqual({ docs: 'other-alice', wiki: 'other-alice' })

    expect(await reset(otherAlice)).toEqual(['docs', 'wiki'])
    expect(await reach(bob)).toEqual({ docs: 'bob', wiki: 'bob' })
    expect(await reset(alice)).toEqual([])
  })
})
