// Isolation under load: two tenants with the same user_id and two users of one tenant, each
// really signed in as a different account, hammer three upstreams (Streamable HTTP, legacy SSE,
// per-user tool lists) concurrently, also while every token is due for refresh and while the
// upstream forgets its sessions. No answer ever carries another's identity (whoami's sub), no
// upstream session is touched with another user's token, and no token is lost.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { OTHER_TENANT_KEY, startRelay, TEST_API_KEY, type TestRelay } from '../support/relay.ts'
import { answeredByStatus, createTally, signIn } from './harness.ts'

interface Identity {
  name: string
  apiKey: string
  tenant: string
  userId: string
  account: string
}

const IDENTITIES: Identity[] = [
  { name: 'default/alice', apiKey: TEST_API_KEY, tenant: 'default', userId: 'alice', account: 'alice-account' },
  { name: 'default/bob', apiKey: TEST_API_KEY, tenant: 'default', userId: 'bob', account: 'bob-account' },
  { name: 'other/alice', apiKey: OTHER_TENANT_KEY, tenant: 'other', userId: 'alice', account: 'mallory-account' },
  { name: 'other/bob', apiKey: OTHER_TENANT_KEY, tenant: 'other', userId: 'bob', account: 'other-bob-account' },
]
const SERVERS = ['docs', 'legacy', 'peruser'] as const
const CALLS_PER_ROUND = 200

let as: AuthorizationServer
const upstreams: Record<(typeof SERVERS)[number], McpUpstream> = {} as never
let relay: TestRelay
let clockOffsetMs = 0
const tally = createTally('isolation')
const figures = { calls: 0, crossed: 0, failed: 0 }

beforeAll(async () => {
  as = await startAuthorizationServer()
  upstreams.docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  upstreams.legacy = await startMcpUpstream({ auth: { issuer: as.issuer }, transport: 'sse' })
  upstreams.peruser = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [
      { server_id: 'docs', mcp_url: upstreams.docs.url },
      { server_id: 'legacy', mcp_url: upstreams.legacy.url },
      { server_id: 'peruser', mcp_url: upstreams.peruser.url, tool_cache: 'user' },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    now: () => Date.now() + clockOffsetMs,
  })
  for (const identity of IDENTITIES) {
    for (const serverId of SERVERS) await signIn(relay, identity.userId, identity.account, { apiKey: identity.apiKey, serverId })
  }
}, 60_000)

afterAll(async () => {
  tally.print({ ...figures, relayAnswers: await answeredByStatus([relay]), foreignSessions: Object.values(upstreams).reduce((sum, upstream) => sum + upstream.counters.foreignSession, 0) })
  await relay?.close()
  await Promise.all([...Object.values(upstreams).map((upstream) => upstream.close()), as?.close()])
})

/**
 * A deterministic interleaving (a fixed-seed LCG, high bits only: the low bits of a power-of-two
 * LCG cycle too fast to mix identities and servers), so a failure replays the same order. Every
 * (identity, server) pair comes first, then random ones.
 */
function schedule(count: number, seed: number): Array<{ identity: Identity; serverId: (typeof SERVERS)[number]; kind: 'call' | 'list' }> {
  let state = seed
  const next = () => (state = (state * 1_103_515_245 + 12_345) % 2 ** 31) >>> 16
  const everyPair = IDENTITIES.flatMap((identity) => SERVERS.map((serverId) => ({ identity, serverId, kind: 'call' as const })))
  return [...everyPair, ...Array.from({ length: count - everyPair.length }, () => ({
    identity: IDENTITIES[next() % IDENTITIES.length]!,
    serverId: SERVERS[next() % SERVERS.length]!,
    kind: next() % 5 === 0 ? ('list' as const) : ('call' as const),
  }))]
}

/** Runs a round concurrently; every answer must be the caller's own. Returns the answers' subs. */
async function hammer(seed: number, during?: () => void): Promise<void> {
  const plan = schedule(CALLS_PER_ROUND, seed)
  const running = plan.map(async ({ identity, serverId, kind }) => {
    if (kind === 'list') {
      const list = await relay.post('/tools/list-tools', { user_id: identity.userId, server_id: serverId }, { apiKey: identity.apiKey })
      tally.add(list.status)
      expect(list.status).toBe(200)
      expect(list.body.auth_required, `${identity.name} ${serverId}`).toEqual([])
      expect(list.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toContain(`${serverId}::whoami`)
      return
    }
    const answer = await relay.post('/tools/call-tool', { user_id: identity.userId, tool_ref: `${serverId}::whoami`, input: {} }, { apiKey: identity.apiKey })
    tally.add(answer.status)
    figures.calls++
    expect(answer.status).toBe(200)
    if (!answer.body.ok) {
      figures.failed++
      throw new Error(`${identity.name} on ${serverId}: ${JSON.stringify(answer.body)}`)
    }
    const sub = answer.body.result.structuredContent.sub
    if (sub !== identity.account) figures.crossed++
    expect(sub, `${identity.name} on ${serverId}`).toBe(identity.account)
  })
  during?.()
  const settled = await Promise.allSettled(running)
  const failures = settled.filter((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected')
  expect(failures.map((failure) => String(failure.reason).slice(0, 300))).toEqual([])
}

describe('two tenants with the same user_id, two users of one tenant', () => {
  it(`${CALLS_PER_ROUND} interleaved concurrent calls: each answer is the caller's own account`, async () => {
    await hammer(1)
  })

  it('the same while every token is due for refresh: one refresh per user and server, none crossed or lost', async () => {
    const before = new Map(IDENTITIES.map((identity) => [identity.account, as.refreshCount(identity.account)]))
    clockOffsetMs = 2 * 60_000
    await hammer(2)
    for (const identity of IDENTITIES) {
      // Single-flight per (tenant, user, server): one refresh each, and oidc-provider saw no replay.
      expect(as.refreshCount(identity.account) - before.get(identity.account)!, identity.name).toBe(SERVERS.length)
    }
    expect(as.tokenRequests.filter((request) => request.grantType === 'refresh_token' && !request.ok)).toEqual([])
  })

  it('the same while the upstreams forget every session mid-round', async () => {
    await hammer(3, () => {
      setTimeout(() => {
        for (const upstream of Object.values(upstreams)) upstream.dropSessions()
      }, 5)
    })
  })

  it('no upstream session was ever used with another user\'s token, and every token is still there', async () => {
    for (const [serverId, upstream] of Object.entries(upstreams)) expect(upstream.counters.foreignSession, serverId).toBe(0)
    for (const identity of IDENTITIES) {
      for (const serverId of SERVERS) {
        const token = await relay.deps.tokens.get({ tenant: identity.tenant, userId: identity.userId, serverId })
        expect(token, `${identity.name} ${serverId}`).toBeDefined()
      }
    }
    expect(figures.crossed).toBe(0)
    expect(tally.serverErrors()).toBe(0)
  })
})
