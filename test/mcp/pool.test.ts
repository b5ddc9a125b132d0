// The pool of upstream sessions, against a real SDK MCP server: through the relay's HTTP routes
// where the behaviour is the relay's (eviction, idle expiry, reconnect, shared sessions), and on
// createMcpPool directly where only the pool can be driven into the state (a call in flight).
import { afterEach, describe, expect, it } from 'vitest'
import { connectUpstream } from '../../src/mcp/connect.ts'
import { createMcpPool, type McpPool, type OpenSession } from '../../src/mcp/pool.ts'
import { createUpstreamFetch } from '../../src/mcp/upstream-fetch.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.allSettled(cleanups.splice(0).reverse().map((cleanup) => cleanup()))
})

async function setup(options: { env?: Record<string, string>; now?: () => number } = {}) {
  const upstream = await startMcpUpstream()
  cleanups.push(() => upstream.close())
  const relay = await startRelay({
    servers: [{ server_id: 'open', description: 'Open server', mcp_url: upstream.url }],
    ...options,
  })
  cleanups.push(() => relay.close())
  return { upstream, relay }
}

async function echo(relay: TestRelay, userId: string, text = userId) {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'open::echo', input: { text } })
  expect(answer.status).toBe(200)
  expect(answer.body).toMatchObject({ ok: true, result: { content: [{ type: 'text', text }] } })
}

/** Polls `condition` every 10 ms; fails after `timeoutMs`. Closing a session upstream is asynchronous (an HTTP DELETE). */
async function waitFor(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('pooled upstream sessions through the relay', () => {
  it('evicts the least recently used session beyond MCP_POOL_MAX_SESSIONS and ends it upstream', async () => {
    const { upstream, relay } = await setup({ env: { MCP_POOL_MAX_SESSIONS: '2' } })
    await echo(relay, 'u1')
    await echo(relay, 'u2')
    expect(upstream.counters.sessionsOpen()).toBe(2)
    await echo(relay, 'u3')
    expect(upstream.counters.initialize).toBe(3)
    // u1 was evicted: its session is ended upstream (DELETE), not left for the server to expire.
    await waitFor(() => upstream.counters.sessionsOpen() === 2)
    expect(relay.deps.pool.size()).toBe(2)

    await echo(relay, 'u2') // pooled: no new session, and now more recent than u3
    expect(upstream.counters.initialize).toBe(3)
    await echo(relay, 'u1') // evicted before: a new session, evicting u3
    expect(upstream.counters.initialize).toBe(4)
    await waitFor(() => upstream.counters.sessionsOpen() === 2)
    await echo(relay, 'u2')
    expect(upstream.counters.initialize).toBe(4)
    await echo(relay, 'u3')
    expect(upstream.counters.initialize).toBe(5)
  })

  it('closes a session idle for MCP_POOL_IDLE_SECONDS', async () => {
    let clock = Date.now()
    const { upstream, relay } = await setup({ env: { MCP_POOL_IDLE_SECONDS: '1' }, now: () => clock })
    await echo(relay, 'idler')
    await echo(relay, 'idler')
    expect(upstream.counters.initialize).toBe(1)
    expect(upstream.counters.sessionsOpen()).toBe(1)

    clock += 1500
    // The sweep runs every second (the shortest interval it uses).
    await waitFor(() => upstream.counters.sessionsOpen() === 0 && relay.deps.pool.size() === 0, 3000)
    await echo(relay, 'idler')
    expect(upstream.counters.initialize).toBe(2)
  })

  it('keeps a session that is used within MCP_POOL_IDLE_SECONDS', async () => {
    let clock = Date.now()
    const { upstream, relay } = await setup({ env: { MCP_POOL_IDLE_SECONDS: '1' }, now: () => clock })
    await echo(relay, 'busy')
    await echo(relay, 'quiet')
    clock += 800
    await echo(relay, 'busy')
    clock += 800
    // 'quiet' is 1.6 s idle, 'busy' 0.8 s: only 'quiet' goes.
    await waitFor(() => upstream.counters.sessionsOpen() === 1, 3000)
    expect(relay.deps.pool.size()).toBe(1)
    await echo(relay, 'busy')
    expect(upstream.counters.initialize).toBe(2)
  })

  it('reopens a session the server lost (404) once, transparently', async () => {
    const { upstream, relay } = await setup()
    await echo(relay, 'loser')
    expect(upstream.counters.initialize).toBe(1)
    upstream.dropSessions()
    await echo(relay, 'loser')
    expect(upstream.counters.initialize).toBe(2)
    await echo(relay, 'loser')
    expect(upstream.counters.initialize).toBe(2)
  })

  it('reopens a lost session once for all the calls that found it lost', async () => {
    const { upstream, relay } = await setup()
    await echo(relay, 'crowd')
    upstream.dropSessions()
    await Promise.all(Array.from({ length: 8 }, (_, i) => echo(relay, 'crowd', `call ${i}`)))
    expect(upstream.counters.initialize).toBe(2)
    expect(upstream.counters.sessionsOpen()).toBe(1)
  })

  it('shares one session among concurrent calls of one user', async () => {
    const { upstream, relay } = await setup()
    await Promise.all(Array.from({ length: 10 }, (_, i) => echo(relay, 'eager', `call ${i}`)))
    expect(upstream.counters.initialize).toBe(1)
    expect(upstream.counters.toolsCall).toBe(10)
    expect(upstream.counters.sessionsOpen()).toBe(1)
  })

  it('keeps one session per user', async () => {
    const { upstream, relay } = await setup()
    await Promise.all(['a', 'b', 'c'].map((userId) => echo(relay, userId)))
    await Promise.all(['a', 'b', 'c'].map((userId) => echo(relay, userId)))
    expect(upstream.counters.initialize).toBe(3)
    expect(upstream.counters.sessionsOpen()).toBe(3)
  })

  it('ends every pooled session upstream when the relay shuts down', async () => {
    const { upstream, relay } = await setup()
    await Promise.all(['a', 'b', 'c'].map((userId) => echo(relay, userId)))
    expect(upstream.counters.sessionsOpen()).toBe(3)
    await relay.close()
    expect(upstream.counters.sessionsOpen()).toBe(0)
  })
})

describe('createMcpPool', () => {
  let upstream: McpUpstream

  async function pool(maxSessions: number): Promise<McpPool> {
    upstream = await startMcpUpstream()
    cleanups.push(() => upstream.close())
    const created = createMcpPool({ maxSessions, idleMs: 60_000, now: Date.now, logger: { warn() {}, debug() {} } })
    cleanups.push(() => created.close())
    return created
  }

  const open: OpenSession = (accessToken, onClose) =>
    connectUpstream({
      url: upstream.url,
      fetch: createUpstreamFetch({ accessToken, maxResponseBytes: 1024 * 1024 }),
      timeoutMs: 5000,
      mode: { kind: 'legacy' },
      onToolsChanged: () => undefined,
      onClose,
    })

  function deferred() {
    let resolve!: () => void
    const promise = new Promise<void>((r) => (resolve = r))
    return { promise, resolve }
  }

  const echoOn = (text: string) => async (client: Parameters<Parameters<McpPool['use']>[3]>[0]) => {
    const result = await client.callTool({ name: 'echo', arguments: { text } })
    return (result.content as Array<{ text: string }>)[0]!.text
  }

  it('opens a new session even when every other one is busy, and trims the pool when they finish', async () => {
    const sessions = await pool(1)
    const gate = deferred()
    const first = sessions.use('a', undefined, open, async (client) => {
      await gate.promise
      return echoOn('a')(client)
    })
    await waitFor(() => upstream.counters.initialize === 1)
    // 'a' is busy and the pool is full: the new session must not be the one evicted.
    expect(await sessions.use('b', undefined, open, echoOn('b'))).toBe('b')
    gate.resolve()
    expect(await first).toBe('a')
    await waitFor(() => sessions.size() === 1 && upstream.counters.sessionsOpen() === 1)
  })

  it('lets a call in flight finish on a dropped session, then ends it', async () => {
    const sessions = await pool(10)
    const gate = deferred()
    const inFlight = sessions.use('a', undefined, open, async (client) => {
      await gate.promise
      return echoOn('still here')(client)
    })
    await waitFor(() => upstream.counters.initialize === 1)
    await sessions.drop('a')
    expect(sessions.size()).toBe(0)
    gate.resolve()
    expect(await inFlight).toBe('still here')
    await waitFor(() => upstream.counters.sessionsOpen() === 0)
  })

  it('forgets a session that failed to open, so the next use tries again', async () => {
    const sessions = await pool(10)
    let attempts = 0
    const failing: OpenSession = async (accessToken, onClose) => {
      if (++attempts === 1) throw new Error('first attempt fails')
      return open(accessToken, onClose)
    }
    await expect(sessions.use('a', undefined, failing, echoOn('x'))).rejects.toThrow('first attempt fails')
    expect(sessions.size()).toBe(0)
    expect(await sessions.use('a', undefined, failing, echoOn('x'))).toBe('x')
  })
})
