// The tool-list cache and the warm path, through the relay's HTTP routes, against real peers:
// oidc-provider, SDK MCP servers (counting what reaches them) and the scripted browser.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import type { IncomingMessage, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

let as: AuthorizationServer
const upstreams: McpUpstream[] = []
const relays: TestRelay[] = []

beforeAll(async () => {
  as = await startAuthorizationServer()
})

afterAll(async () => {
  await Promise.allSettled(relays.map((relay) => relay.close()))
  await Promise.allSettled([...upstreams.map((upstream) => upstream.close()), as?.close()])
})

async function upstream(options: Parameters<typeof startMcpUpstream>[0] = {}): Promise<McpUpstream> {
  const started = await startMcpUpstream(options)
  upstreams.push(started)
  return started
}

async function relayFor(servers: object[]): Promise<TestRelay> {
  const relay = await startRelay({ servers, env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host } })
  relays.push(relay)
  return relay
}

async function signIn(relay: TestRelay, userId: string, serverId: string, options: { account?: string; forceReauth?: boolean } = {}) {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: serverId, force_reauth: options.forceReauth ?? false })
  expect(status.body.servers[0]).toMatchObject({ status: 'need_auth' })
  const page = await signInThroughBrowser(status.body.servers[0].login_url, options.account ?? userId)
  expect(page.status).toBe(200)
}

async function listTools(relay: TestRelay, userId: string, serverId: string) {
  const answer = await relay.post('/tools/list-tools', { user_id: userId, server_id: serverId })
  expect(answer.status).toBe(200)
  return answer.body as {
    tools: Array<{ tool_ref: string; name: string }>
    servers: Array<{ server_id: string; source: 'cache' | 'upstream'; tool_count: number }>
    auth_required: Array<{ server_id: string }>
    errors: unknown[]
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * Counts the HTTP requests that reach servers in this process, by the port and path they arrive
 * at (node:http's `http.server.request.start` diagnostics channel): whoever sends them is counted.
 */
function countServerRequests() {
  const seen: Array<{ port: number; path: string }> = []
  const listener = (message: unknown) => {
    const { request, server } = message as { request: IncomingMessage; server: Server }
    seen.push({ port: (server.address() as AddressInfo).port, path: (request.url ?? '').split('?')[0]! })
  }
  subscribe('http.server.request.start', listener)
  return {
    to: (url: string, options: { path?: boolean } = {}) => {
      const target = new URL(url)
      return seen.filter((request) => String(request.port) === target.port && (!options.path || request.path === target.pathname)).length
    },
    stop: () => unsubscribe('http.server.request.start', listener),
  }
}

describe('tools/list pagination and list_changed', () => {
  it('follows tools/list pages to the end and caches the whole list', async () => {
    const paged = await upstream({ toolCount: 120, pageSize: 25 })
    const relay = await relayFor([{ server_id: 'paged', mcp_url: paged.url }])
    const first = await listTools(relay, 'reader', 'paged')
    // 3 base tools + 120 fillers, 25 a page: 5 pages.
    expect(first.tools).toHaveLength(123)
    expect(first.tools.at(-1)).toMatchObject({ tool_ref: 'paged::tool_119' })
    expect(new Set(first.tools.map((tool) => tool.name)).size).toBe(123)
    expect(paged.counters.toolsList).toBe(5)

    await listTools(relay, 'reader', 'paged') // an open server is known to be open now: this fills the cache
    const cached = await listTools(relay, 'another', 'paged')
    expect(cached.servers).toEqual([{ server_id: 'paged', source: 'cache', tool_count: 123 }])
    expect(paged.counters.toolsList).toBe(10)
  })

  it('stops following cursors at the page cap: a list that does not end is the server\'s error', async () => {
    const endless = await upstream({ toolCount: 200, pageSize: 1 })
    const relay = await relayFor([{ server_id: 'endless', mcp_url: endless.url }])
    const answer = await listTools(relay, 'reader', 'endless')
    expect(answer.errors).toEqual([{ server_id: 'endless', error: expect.stringContaining('server pagination did not terminate') }])
    expect(endless.counters.toolsList).toBe(100)
    expect(answer.tools).toEqual([])
  })

  it('drops the cached list when a pooled session hears notifications/tools/list_changed', async () => {
    const changing = await upstream()
    const relay = await relayFor([{ server_id: 'changing', mcp_url: changing.url }])
    await listTools(relay, 'watcher', 'changing')
    await listTools(relay, 'watcher', 'changing')
    const cached = await listTools(relay, 'watcher', 'changing')
    expect(cached.servers[0]!.source).toBe('cache')
    const listsBefore = changing.counters.toolsList

    await changing.notifyToolsChanged()
    // The notification reaches the relay's pooled session asynchronously: ask until the cache
    // has been dropped (a cached answer never reaches the upstream, so the count below holds).
    let after = await listTools(relay, 'watcher', 'changing')
    const deadline = Date.now() + 5000
    while (after.servers[0]!.source === 'cache' && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      after = await listTools(relay, 'watcher', 'changing')
    }
    expect(after.servers[0]!.source).toBe('upstream')
    expect(after.tools.map((tool) => tool.name)).toContain('added_1')
    expect(changing.counters.toolsList).toBe(listsBefore + 1)
    expect((await listTools(relay, 'someone-else', 'changing')).servers[0]!.source).toBe('cache')
  })
})

describe('signed-in users', () => {
  let docs: McpUpstream
  let personal: McpUpstream
  let relay: TestRelay

  beforeAll(async () => {
    docs = await upstream({ auth: { issuer: as.issuer } })
    personal = await upstream({ auth: { issuer: as.issuer } })
    relay = await relayFor([
      { server_id: 'docs', description: 'Shared list', mcp_url: docs.url },
      { server_id: 'personal', description: 'List per user', mcp_url: personal.url, tool_cache: 'user' },
    ])
  })

  it('loads a missing list once however many users ask at the same time (server-mode cache)', async () => {
    const users = Array.from({ length: 20 }, (_, i) => `crowd-${i}`)
    for (const userId of users) await signIn(relay, userId, 'docs')
    expect(docs.counters.toolsList).toBe(0)

    const answers = await Promise.all(users.map((userId) => listTools(relay, userId, 'docs')))
    for (const answer of answers) {
      expect(answer.auth_required).toEqual([])
      expect(answer.tools.map((tool) => tool.tool_ref)).toEqual(['docs::whoami', 'docs::echo', 'docs::fail'])
    }
    expect(docs.counters.toolsList).toBe(1)
    expect(docs.counters.initialize).toBe(1)
  })

  it('keeps one list per user with tool_cache "user"', async () => {
    await signIn(relay, 'alice', 'personal')
    await signIn(relay, 'bob', 'personal')
    expect((await listTools(relay, 'alice', 'personal')).servers[0]!.source).toBe('upstream')
    expect((await listTools(relay, 'bob', 'personal')).servers[0]!.source).toBe('upstream')
    expect(personal.counters.toolsList).toBe(2)
    expect((await listTools(relay, 'alice', 'personal')).servers[0]!.source).toBe('cache')
    expect((await listTools(relay, 'bob', 'personal')).servers[0]!.source).toBe('cache')
    expect(personal.counters.toolsList).toBe(2)
  })

  it('reset drops the user\'s session and per-user list, and nobody else\'s', async () => {
    await signIn(relay, 'carol', 'personal')
    await signIn(relay, 'dave', 'personal')
    await listTools(relay, 'carol', 'personal')
    await listTools(relay, 'dave', 'personal')
    const open = personal.counters.sessionsOpen()

    const reset = await relay.post('/oauth/reset', { user_id: 'carol', server_id: 'personal' })
    expect(reset.body.deleted_server_ids).toEqual(['personal'])
    expect(personal.counters.sessionsOpen()).toBe(open - 1)
    const signedOut = await listTools(relay, 'carol', 'personal')
    expect(signedOut.tools).toEqual([])
    expect(signedOut.auth_required).toEqual([expect.objectContaining({ server_id: 'personal' })])
    expect((await listTools(relay, 'dave', 'personal')).servers[0]!.source).toBe('cache')

    await signIn(relay, 'carol', 'personal')
    const lists = personal.counters.toolsList
    expect((await listTools(relay, 'carol', 'personal')).servers[0]!.source).toBe('upstream')
    expect(personal.counters.toolsList).toBe(lists + 1)
  })

  it('signing in again as another account drops the old session and per-user list', async () => {
    await signIn(relay, 'erin', 'personal', { account: 'erin-work' })
    await listTools(relay, 'erin', 'personal')
    const whoamiBefore = await relay.post('/tools/call-tool', { user_id: 'erin', tool_ref: 'personal::whoami', input: {} })
    expect(whoamiBefore.body.result.structuredContent.sub).toBe('erin-work')
    const initializeBefore = personal.counters.initialize
    const open = personal.counters.sessionsOpen()

    await signIn(relay, 'erin', 'personal', { account: 'erin-home', forceReauth: true })
    expect(personal.counters.sessionsOpen()).toBe(open - 1)
    expect((await listTools(relay, 'erin', 'personal')).servers[0]!.source).toBe('upstream')
    const whoamiAfter = await relay.post('/tools/call-tool', { user_id: 'erin', tool_ref: 'personal::whoami', input: {} })
    expect(whoamiAfter.body.result.structuredContent.sub).toBe('erin-home')
    expect(personal.counters.initialize).toBe(initializeBefore + 1)
    expect(personal.counters.foreignSession).toBe(0)
  })

  it('makes no metadata requests on a warm call, nor when reopening a session', async () => {
    await signIn(relay, 'frank', 'docs')
    const echo = () => relay.post('/tools/call-tool', { user_id: 'frank', tool_ref: 'docs::echo', input: { text: 'warm' } })
    expect((await echo()).body.ok).toBe(true)
    await listTools(relay, 'frank', 'docs')

    const counter = countServerRequests()
    try {
      for (let i = 0; i < 5; i++) {
        expect((await echo()).body.ok).toBe(true)
        expect((await listTools(relay, 'frank', 'docs')).tools).toHaveLength(3)
        expect((await relay.post('/tools/auth-status', { user_id: 'frank', server_id: 'docs' })).body.all_authorized).toBe(true)
      }
      docs.dropSessions()
      expect((await echo()).body.ok).toBe(true)
      expect(counter.to(as.url)).toBe(0)
      expect(counter.to(docs.resourceMetadataUrl!, { path: true })).toBe(0)
      // The counter sees the MCP traffic, so zero above is not for want of looking.
      expect(counter.to(docs.url, { path: true })).toBeGreaterThanOrEqual(6)
    } finally {
      counter.stop()
    }
  })
})
