// GET /admin/connections and POST /admin/reset on every store (DESIGN.md §4, issue 12 item 5):
// the same connections in the same order on memory, SQLite, Redis and PostgreSQL; filters;
// pages joined by next_cursor; a refreshed token's new expiry; a reset's row gone; no token value.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { UpstreamToken } from '../../src/store/tokens.ts'
import { KEY_1 } from '../lifecycle/lifecycle-peers.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { isolatedStore, type IsolatedStore } from '../support/isolated-stores.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const ADMIN_KEY = 'admin-key-0123456789abcdef'

let as: AuthorizationServer
let docs: McpUpstream

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
})

afterAll(async () => {
  await docs?.close()
  await as?.close()
})

// The connections of these tests, in the order every store must list them: storeKey() order,
// i.e. byte order of the percent-encoded (tenant, user, server): '%' < 'Z' < 'a' < 'l'.
const ROWS = [
  { tenant: 'default', user_id: 'ü', server_id: 'docs' },
  { tenant: 'default', user_id: 'Zed', server_id: 'docs' },
  { tenant: 'default', user_id: 'a:b', server_id: 'wiki' },
  { tenant: 'default', user_id: 'alice', server_id: 'docs' }, // signed in for real
  { tenant: 'default', user_id: 'alice', server_id: 'wiki' },
  { tenant: 'default', user_id: 'bob', server_id: 'docs' },
  { tenant: 'other', user_id: 'alice', server_id: 'docs' },
] as const

const pick = (...indexes: number[]) => indexes.map((index) => ROWS[index])

describe.each(['memory', 'sqlite', 'redis', 'postgres'] as const)('admin connections on %s', (kind) => {
  let store: IsolatedStore
  let relay: TestRelay
  let clock = Date.now()
  const secrets: string[] = []

  beforeAll(async () => {
    store = await isolatedStore(kind)
    relay = await startRelay({
      servers: [
        { server_id: 'docs', mcp_url: docs.url },
        { server_id: 'wiki', mcp_url: docs.url },
      ],
      env: { STORE_URL: store.url, RELAY_ENCRYPTION_KEY: KEY_1, OAUTH_TRUSTED_HOSTS: new URL(as.url).host, RELAY_ADMIN_KEYS: ADMIN_KEY },
      now: () => clock,
    })
    const status = await relay.post('/tools/auth-status', { user_id: 'alice', server_id: 'docs' })
    const page = await signInThroughBrowser(status.body.servers[0].login_url, 'alice')
    expect(page.status, page.html).toBe(200)
    // The others through the token store's own writer, as a sign-in would.
    for (const [index, row] of ROWS.entries()) {
      if (row.user_id === 'alice' && row.server_id === 'docs' && row.tenant === 'default') continue
      const token: UpstreamToken = {
        accessToken: `access-${kind}-${index}`,
        refreshToken: index % 2 === 0 ? `refresh-${kind}-${index}` : undefined,
        expiresAt: index % 2 === 0 ? Date.UTC(2030, 0, 1, 0, index) : undefined,
        scope: 'mcp:read',
        issuer: as.issuer,
        clientId: 'some-client',
        resource: docs.url,
        obtainedAt: Date.UTC(2026, 0, 1, 0, index),
      }
      await relay.deps.tokens.put({ tenant: row.tenant, userId: row.user_id, serverId: row.server_id }, token)
    }
    const alice = (await relay.deps.tokens.get({ tenant: 'default', userId: 'alice', serverId: 'docs' }))!
    secrets.push(alice.accessToken, alice.refreshToken!, ...ROWS.flatMap((_, index) => [`access-${kind}-${index}`, `refresh-${kind}-${index}`]))
  }, 30_000)

  afterAll(async () => {
    await relay?.close()
    await store?.release()
  })

  async function list(query: Record<string, string | number> = {}): Promise<{ connections: any[]; next_cursor: string | null }> {
    const search = new URLSearchParams(Object.entries(query).map(([name, value]): [string, string] => [name, String(value)]))
    const answer = await fetch(`${relay.url}/admin/connections?${search}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })
    const text = await answer.text()
    expect(answer.status, text).toBe(200)
    for (const secret of secrets) expect(text).not.toContain(secret)
    return JSON.parse(text)
  }

  /** Every page, following next_cursor; the rows without their times. */
  async function listAll(query: Record<string, string | number>): Promise<{ pages: number[]; rows: object[] }> {
    const pages: number[] = []
    const rows: object[] = []
    let cursor: string | null = null
    do {
      const page = await list({ ...query, ...(cursor ? { cursor } : {}) })
      pages.push(page.connections.length)
      rows.push(...page.connections.map(({ tenant, user_id, server_id }) => ({ tenant, user_id, server_id })))
      cursor = page.next_cursor
    } while (cursor !== null && pages.length < 10)
    return { pages, rows }
  }

  it('lists every connection in key order, a page at a time', async () => {
    const all = await list()
    expect(all.next_cursor).toBeNull()
    expect(all.connections.map(({ tenant, user_id, server_id }) => ({ tenant, user_id, server_id }))).toEqual(ROWS)
    expect(all.connections[0]).toEqual({
      ...ROWS[0],
      obtained_at: '2026-01-01T00:00:00.000Z',
      expires_at: '2030-01-01T00:00:00.000Z',
      scope: 'mcp:read',
      refreshable: true,
    })
    expect(all.connections[1]).toMatchObject({ expires_at: null, refreshable: false })
    expect(await listAll({ limit: 3 })).toEqual({ pages: [3, 3, 1], rows: ROWS })
    const forged = await fetch(`${relay.url}/admin/connections?cursor=${encodeURIComponent('not a cursor')}`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    })
    expect(forged.status).toBe(400)
    expect(((await forged.json()) as { error: { message: string } }).error.message).toMatch(/^cursor: /)
  })

  it.each([
    [{ tenant: 'other' }, pick(6)],
    [{ tenant: 'default', user_id: 'alice' }, pick(3, 4)],
    [{ user_id: 'alice' }, pick(3, 4, 6)],
    [{ user_id: 'a:b' }, pick(2)],
    [{ server_id: 'wiki' }, pick(2, 4)],
    [{ tenant: 'default', server_id: 'docs', limit: 2 }, pick(0, 1, 3, 5)],
    [{ tenant: 'nobody' }, []],
  ])('filters by %o', async (query, expected) => {
    expect((await listAll(query)).rows).toEqual(expected)
  })

  it("shows a refreshed token's new expiry", async () => {
    const row = async () => (await list({ tenant: 'default', user_id: 'alice', server_id: 'docs' })).connections[0]
    const before = await row()
    expect(before).toMatchObject({ refreshable: true, expires_at: expect.any(String) })
    clock += 10 * 60_000 // past the access token's 60 s: the next call refreshes first
    const call = await relay.post('/tools/call-tool', { user_id: 'alice', tool_ref: 'docs::whoami', input: {} })
    expect(call.body).toMatchObject({ ok: true })
    const after = await row()
    expect(Date.parse(after.expires_at)).toBeGreaterThan(Date.parse(before.expires_at))
    expect(Date.parse(after.obtained_at)).toBeGreaterThan(Date.parse(before.obtained_at))
  })

  it("POST /admin/reset removes the user's rows (and revokes a real grant), and nobody else's", async () => {
    const reset = async (body: object) => {
      const answer = await fetch(`${relay.url}/admin/reset`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      expect(answer.status).toBe(200)
      return (await answer.json()) as { deleted_server_ids: string[] }
    }
    expect(await reset({ tenant: 'default', user_id: 'alice', server_id: 'docs' })).toMatchObject({
      user_id: 'alice',
      deleted_server_ids: ['docs'],
      servers: [{ server_id: 'docs', revoked: true }],
    })
    expect((await reset({ tenant: 'default', user_id: 'alice' })).deleted_server_ids).toEqual(['wiki'])
    expect((await listAll({})).rows).toEqual(pick(0, 1, 2, 5, 6))
  })
})
