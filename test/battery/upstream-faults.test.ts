// Upstream MCP servers that fail, each a real loopback server of this test: down, refusing,
// hanging, answering 500, garbage, a cut-short event stream, far too much, a redirect elsewhere.
// Every fault is a 200 answer with ok:false and a clear code within a bound; the user's token
// stays; and one slow or dead upstream never holds up calls to other servers or other users.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { freePort } from '../support/free-port.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'
import { startFaultUpstream, startRefusingPort, startSilentPort, type FaultMode, type FaultUpstream } from './fault-upstream.ts'
import { answeredByStatus, createTally, signIn, waitUntil, whoami } from './harness.ts'

let as: AuthorizationServer
let docs: McpUpstream
let open: McpUpstream
let flaky: FaultUpstream
let slow: FaultUpstream
let elsewhere: FaultUpstream
let refusing: Awaited<ReturnType<typeof startRefusingPort>>
let silentAs: Awaited<ReturnType<typeof startSilentPort>>
let hangingDiscovery: FaultUpstream
let relay: TestRelay
const tally = createTally('upstream-faults')

/** UPSTREAM_TIMEOUT_SECONDS for this relay, and what a fault may take at most to be answered. */
const TIMEOUT_S = 1
const BOUND_MS = 4000
/** The slow server's own timeout_seconds: long enough that healthy calls visibly overtake it. */
const SLOW_TIMEOUT_S = 4

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  open = await startMcpUpstream()
  elsewhere = await startFaultUpstream({ target: open.url })
  flaky = await startFaultUpstream({ target: open.url, issuer: as.issuer, redirectTo: elsewhere.url })
  slow = await startFaultUpstream({ target: open.url })
  refusing = await startRefusingPort()
  silentAs = await startSilentPort()
  // An upstream whose authorization server accepts connections and never answers.
  hangingDiscovery = await startFaultUpstream({ target: open.url, issuer: silentAs.origin })
  const downPort = await freePort()
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Healthy docs', mcp_url: docs.url },
      { server_id: 'open', description: 'Healthy open server', mcp_url: open.url },
      { server_id: 'flaky', description: 'Misbehaves on demand', mcp_url: flaky.url },
      { server_id: 'slow', description: 'Hangs', mcp_url: slow.url, timeout_seconds: SLOW_TIMEOUT_S },
      { server_id: 'down', description: 'Nobody listens', mcp_url: `http://127.0.0.1:${downPort}/mcp` },
      { server_id: 'refusing', description: 'Resets every connection', mcp_url: refusing.url },
      { server_id: 'as-hangs', description: 'Its authorization server hangs', mcp_url: hangingDiscovery.url },
    ],
    env: {
      OAUTH_TRUSTED_HOSTS: `${new URL(as.url).host},${new URL(silentAs.origin).host}`,
      UPSTREAM_TIMEOUT_SECONDS: String(TIMEOUT_S),
    },
  })
  await signIn(relay, 'alice', 'alice')
  await signIn(relay, 'bob', 'bob', { apiKey: OTHER_TENANT_KEY })
  await signIn(relay, 'alice', 'alice', { serverId: 'flaky' })
  slow.setMode('hang')
})

afterAll(async () => {
  tally.print({ serverErrors: tally.serverErrors(), relayAnswers: await answeredByStatus([relay]) })
  await relay?.close()
  await Promise.all([docs?.close(), open?.close(), flaky?.close(), slow?.close(), elsewhere?.close(), refusing?.close(), silentAs?.close(), hangingDiscovery?.close(), as?.close()])
})

async function timed<T>(call: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now()
  const value = await call()
  return { value, ms: Date.now() - started }
}

async function call(userId: string, toolRef: string, input: object = {}, options: { apiKey?: string } = {}) {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: toolRef, input }, options)
  tally.add(answer.status)
  expect(answer.status, JSON.stringify(answer.body)).toBe(200)
  return answer.body
}

const flakyOwner = { tenant: 'default', userId: 'alice', serverId: 'flaky' }

describe('an upstream that is not there', () => {
  for (const serverId of ['down', 'refusing']) {
    it(`${serverId}: every route answers at once with the server's error`, async () => {
      tally.fault(serverId)
      const { value: answer, ms } = await timed(() => call('alice', `${serverId}::echo`, { text: 'x' }))
      expect(answer).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: `${serverId}::echo` })
      expect(answer.message).toContain(serverId)
      expect(ms).toBeLessThan(BOUND_MS)
      const list = await relay.post('/tools/list-tools', { user_id: 'alice', server_ids: [serverId, 'open'] })
      tally.add(list.status)
      expect(list.body.errors).toEqual([expect.objectContaining({ server_id: serverId })])
      expect(list.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toContain('open::echo')
      const status = await relay.post('/tools/auth-status', { user_id: 'alice', server_id: serverId })
      tally.add(status.status)
      expect(status.body.servers[0]).toMatchObject({ server_id: serverId, status: 'error', message: expect.stringContaining(serverId) })
      expect(status.body.all_authorized).toBe(false)
    })
  }

  it('an authorization server that never answers: auth-status says so within the timeout', async () => {
    tally.fault('authorization server hangs')
    const { value: status, ms } = await timed(() => relay.post('/tools/auth-status', { user_id: 'alice', server_id: 'as-hangs' }))
    tally.add(status.status)
    expect(status.status).toBe(200)
    expect(status.body.servers[0]).toMatchObject({ server_id: 'as-hangs', status: 'error' })
    expect(ms).toBeLessThan(BOUND_MS)
    expect(silentAs.accepted()).toBeGreaterThan(0)
  })
})

describe('a signed-in user whose upstream misbehaves', () => {
  // Each fault on tools/call (the session stays up) and on everything (a fresh session), then
  // the server behaves again: the same user's next call works and the token was never dropped.
  const FAULTS: Array<{ mode: FaultMode; codes: string[]; message?: RegExp }> = [
    { mode: 'hang', codes: ['TIMEOUT'], message: /did not answer in time/ },
    { mode: 'status-500', codes: ['UPSTREAM_ERROR'], message: /^flaky failed: / },
    { mode: 'garbage-json', codes: ['UPSTREAM_ERROR'] },
    { mode: 'garbage-html', codes: ['UPSTREAM_ERROR'] },
    // The server's own words, once, without the SDK's "MCP error -32603: " prefixes.
    { mode: 'json-rpc-error', codes: ['UPSTREAM_ERROR'], message: /^flaky failed: database down$/ },
    { mode: 'wrong-json-rpc', codes: ['UPSTREAM_ERROR', 'TIMEOUT'] },
    { mode: 'truncated-sse', codes: ['UPSTREAM_ERROR'], message: /event stream broke before it answered/ },
    { mode: 'ended-sse', codes: ['UPSTREAM_ERROR'], message: /event stream ended before it answered/ },
    { mode: 'huge-json', codes: ['UPSTREAM_ERROR'], message: /larger than 2 MiB/ },
    { mode: 'huge-json-chunked', codes: ['UPSTREAM_ERROR'], message: /larger than 2 MiB/ },
    { mode: 'huge-sse', codes: ['UPSTREAM_ERROR'], message: /larger than 2 MiB/ },
    { mode: 'reset', codes: ['UPSTREAM_ERROR'] },
    { mode: 'redirect', codes: ['UPSTREAM_ERROR'], message: /Redirect to .* not followed/ },
  ]
  for (const { mode, codes, message } of FAULTS) {
    for (const on of ['tools/call', 'any'] as const) {
      it(`${mode} (${on === 'any' ? 'every request' : 'tools/call only'})`, async () => {
        tally.fault(`${mode} on ${on}`)
        expect((await call('alice', 'flaky::echo', { text: 'before' })).ok).toBe(true)
        if (on === 'any') await relay.deps.pool.drop('default:alice:flaky')
        flaky.setMode(mode, { on })
        const { value: answer, ms } = await timed(() => call('alice', 'flaky::echo', { text: 'during' }))
        flaky.setMode('pass')
        expect(answer.ok, JSON.stringify(answer).slice(0, 300)).toBe(false)
        expect(codes, JSON.stringify(answer).slice(0, 300)).toContain(answer.error_code)
        if (message) expect(answer.message).toMatch(message)
        expect(answer.message.length).toBeLessThan(500)
        expect(ms).toBeLessThan(BOUND_MS)
        expect(await relay.deps.tokens.get(flakyOwner)).toBeDefined()
        const after = await call('alice', 'flaky::echo', { text: 'after' })
        expect(after, JSON.stringify(after).slice(0, 300)).toMatchObject({ ok: true, result: { content: [{ type: 'text', text: 'after' }] } })
      })
    }
  }

  it.each(['hang', 'stalled-sse'] as const)('%s: once the call answered TIMEOUT, the relay has let go of the request (no socket left open)', async (mode) => {
    tally.fault(`${mode} then let go`)
    expect((await call('alice', 'flaky::echo', { text: 'before' })).ok).toBe(true)
    flaky.setMode(mode, { on: 'tools/call' })
    try {
      const answer = await call('alice', 'flaky::echo', { text: 'during' })
      expect(answer).toMatchObject({ ok: false, error_code: 'TIMEOUT' })
      await waitUntil(() => flaky.hanging() === 0, BOUND_MS, 'the relay closing the request it gave up on')
    } finally {
      flaky.setMode('pass')
    }
  })

  it("an upstream that echoes the request in its error: the user's token is not in the answer", async () => {
    tally.fault('error body echoing the bearer token')
    flaky.setMode('status-500-echo', { on: 'tools/call' })
    try {
      const answer = await call('alice', 'flaky::echo', { text: 'x' })
      const token = (await relay.deps.tokens.get(flakyOwner))!.accessToken
      expect(answer).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
      expect(JSON.stringify(answer)).not.toContain(token)
      expect(JSON.stringify(answer)).not.toContain(token.slice(0, 40))
    } finally {
      flaky.setMode('pass')
    }
  })

  it('a redirect to another origin is not followed: the other origin sees no request and no token', async () => {
    expect(elsewhere.requests()).toBe(0)
    expect(elsewhere.authorizations).toEqual([])
    expect(flaky.authorizations.length).toBeGreaterThan(0)
  })

  it('list-tools and auth-status report a failing server in errors[], the others still listed', async () => {
    tally.fault('list-tools while failing')
    flaky.setMode('status-500')
    await relay.deps.toolCache.drop('server:flaky')
    await relay.deps.pool.drop('default:alice:flaky')
    const list = await relay.post('/tools/list-tools', { user_id: 'alice', server_ids: 'flaky,docs' })
    flaky.setMode('pass')
    tally.add(list.status)
    expect(list.status).toBe(200)
    expect(list.body.errors).toEqual([expect.objectContaining({ server_id: 'flaky' })])
    expect(list.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toContain('docs::whoami')
  })
})

describe('a tool list without end', () => {
  it('stops at a bound on the whole list, not after a hundred 256 KiB pages', async () => {
    tally.fault('endless tools/list')
    await relay.deps.toolCache.drop('server:flaky')
    flaky.setMode('endless-tools')
    try {
      const { value: list, ms } = await timed(() => relay.post('/tools/list-tools', { user_id: 'alice', server_id: 'flaky' }))
      tally.add(list.status)
      expect(list.status).toBe(200)
      // 2 MiB of tool definitions at most: eight or nine pages of this size.
      expect(flaky.toolPages()).toBeLessThanOrEqual(9)
      expect(JSON.stringify(list.body).length).toBeLessThan(3 * 1024 * 1024)
      expect(ms).toBeLessThan(BOUND_MS)
    } finally {
      flaky.setMode('pass')
      await relay.deps.toolCache.drop('server:flaky')
    }
  })
})

describe("an event without end on the session's own stream", () => {
  it('is cut at the response bound, and calls go on', async () => {
    tally.fault('endless event on the GET stream')
    flaky.setMode('huge-get-event')
    try {
      // A fresh session opens its GET stream right after initialize.
      await relay.deps.pool.drop('default:alice:flaky')
      expect((await call('alice', 'flaky::echo', { text: 'during' })).ok).toBe(true)
      await waitUntil(() => flaky.hugeEventBytes() > 0, 5000, 'the GET stream opened')
      // The relay hangs up soon after 2 MiB; the server would have sent 200 MiB and kept the
      // stream open, so a relay without the bound never gets past this wait.
      await waitUntil(() => flaky.hugeStreamsClosed() > 0, 10_000, 'the relay hanging up on the endless event')
      // (The SDK reconnects a broken session stream up to twice: three times 2 MiB, and what the
      // sockets buffered.)
      expect(flaky.hugeEventBytes()).toBeLessThan(24 * 1024 * 1024)
      expect((await call('alice', 'flaky::echo', { text: 'after' })).ok).toBe(true)
    } finally {
      flaky.setMode('pass')
      await relay.deps.pool.drop('default:alice:flaky')
    }
  })
})

describe('one slow or dead upstream never holds up the others', () => {
  it('healthy calls for other servers and users finish while the slow one hangs', async () => {
    tally.fault('slow upstream beside healthy ones')
    const order: string[] = []
    const hangs = call('alice', 'slow::echo', { text: 'x' }).then((answer) => {
      order.push('slow')
      return answer
    })
    const dead = call('carol', 'down::echo', { text: 'x' }).then((answer) => {
      order.push('down')
      return answer
    })
    await waitUntil(() => slow.hanging() > 0, 5000, 'the slow upstream holding the call')
    // While the slow call hangs: the same user on other servers, other users, other tenants.
    const healthy = await Promise.all(
      Array.from({ length: 24 }, (_, i) => {
        const [userId, options, expected] = i % 2 === 0 ? ['alice', {}, 'alice'] : ['bob', { apiKey: OTHER_TENANT_KEY }, 'bob']
        return (i % 3 === 0 ? call(userId as string, 'open::echo', { text: 'quick' }, options) : whoami(relay, userId as string, options).then((who) => {
          tally.add(who.status)
          expect(who.sub).toBe(expected)
          return who.body
        })).then((answer) => {
          order.push('healthy')
          return answer
        })
      }),
    )
    expect(healthy.every((answer) => answer.ok)).toBe(true)
    const slowAnswer = await hangs
    expect((await dead).error_code).toBe('UPSTREAM_ERROR')
    expect(slowAnswer).toMatchObject({ ok: false, error_code: 'TIMEOUT' })
    // Every healthy answer came before the slow one.
    expect(order.indexOf('slow')).toBe(order.length - 1)
    expect(order.filter((entry) => entry === 'healthy')).toHaveLength(24)
  })

  it('a second user of the slow server is not queued behind the first', async () => {
    tally.fault('two users on one slow server')
    const started = Date.now()
    const [first, second] = await Promise.all([call('alice', 'slow::echo'), call('dave', 'slow::echo')])
    expect(first.error_code).toBe('TIMEOUT')
    expect(second.error_code).toBe('TIMEOUT')
    // Both time out in parallel: one timeout, not two back to back.
    expect(Date.now() - started).toBeLessThan(SLOW_TIMEOUT_S * 1000 * 2 - 500)
  })
})

describe('afterwards', () => {
  it('the healthy servers still answer each user as themselves', async () => {
    expect((await whoami(relay, 'alice')).sub).toBe('alice')
    expect((await whoami(relay, 'bob', { apiKey: OTHER_TENANT_KEY })).sub).toBe('bob')
    expect((await call('alice', 'flaky::echo', { text: 'fine' })).ok).toBe(true)
    expect(tally.serverErrors()).toBe(0)
  })
})
