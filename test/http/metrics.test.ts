import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { makeApp } from './helpers.ts'

let as: AuthorizationServer
let docs: McpUpstream
let open: McpUpstream
let relay: TestRelay
// The relay's clock runs ahead by this much: moving it makes stored tokens look near expiry.
let skewMs = 0

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  open = await startMcpUpstream()
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Internal docs', mcp_url: docs.url },
      { server_id: 'open', description: 'Open server', mcp_url: open.url },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    now: () => Date.now() + skewMs,
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([docs?.close(), open?.close(), as?.close()])
})

/** Every sample of GET /metrics, as `name{labels}` → value (labels in the order prom-client writes them). */
async function scrape(): Promise<Map<string, number>> {
  const response = await fetch(`${relay.url}/metrics`, { signal: AbortSignal.timeout(10_000) })
  expect(response.status).toBe(200)
  const samples = new Map<string, number>()
  for (const line of (await response.text()).split('\n')) {
    const match = /^(mcp_relay_[a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line)
    if (match) samples.set(match[1]!, Number(match[2]))
  }
  return samples
}

const callTool = (userId: string, toolRef: string) => relay.post('/tools/call-tool', { user_id: userId, tool_ref: toolRef, input: {} })

describe('GET /metrics counts what the relay did, by domain outcome', () => {
  it('records outcomes, upstream latency, sign-ins, cache lookups, refreshes and pooled sessions', async () => {
    // Before sign-in: call-tool answers 200 NOT_AUTHORIZED, auth-status answers need_auth.
    expect((await callTool('carol', 'docs::whoami')).body.error_code).toBe('NOT_AUTHORIZED')
    const status = await relay.post('/tools/auth-status', { user_id: 'carol', server_id: 'docs' })
    expect(status.body.servers[0].status).toBe('need_auth')
    expect((await relay.post('/tools/call-tool', { user_id: 'carol' })).status).toBe(400)
    // A callback with no live flow: a failed sign-in for no known server.
    expect((await fetch(`${relay.url}/oauth/callback?code=x&state=unknown`, { signal: AbortSignal.timeout(10_000) })).status).toBe(400)

    expect((await signInThroughBrowser(status.body.servers[0].login_url, 'carol')).status).toBe(200)
    expect((await relay.post('/tools/auth-status', { user_id: 'carol', server_id: 'docs' })).body.all_authorized).toBe(true)
    // The first list goes upstream and fills the cache; the second is served from it.
    expect((await relay.post('/tools/list-tools', { user_id: 'carol', server_id: 'docs' })).body.servers[0].source).toBe('upstream')
    expect((await relay.post('/tools/list-tools', { user_id: 'carol', server_id: 'docs' })).body.servers[0].source).toBe('cache')
    expect((await callTool('carol', 'docs::whoami')).body.ok).toBe(true)

    // Two hours on, the token is near expiry: the call refreshes it first.
    skewMs += 2 * 3600_000
    expect((await callTool('carol', 'docs::whoami')).body.ok).toBe(true)
    // Two more, with the token endpoint down: a transient refresh failure, answered UPSTREAM_ERROR.
    skewMs += 2 * 3600_000
    as.failTokenEndpoint(503)
    try {
      expect((await callTool('carol', 'docs::whoami')).body.error_code).toBe('UPSTREAM_ERROR')
    } finally {
      as.failTokenEndpoint(undefined)
    }

    const samples = await scrape()
    const value = (sample: string) => samples.get(sample) ?? 0
    expect(value('mcp_relay_requests_total{route="/tools/call-tool",outcome="NOT_AUTHORIZED"}')).toBe(1)
    expect(value('mcp_relay_requests_total{route="/tools/call-tool",outcome="ok"}')).toBe(2)
    expect(value('mcp_relay_requests_total{route="/tools/call-tool",outcome="UPSTREAM_ERROR"}')).toBe(1)
    expect(value('mcp_relay_requests_total{route="/tools/call-tool",outcome="INVALID_INPUT"}')).toBe(1)
    expect(value('mcp_relay_requests_total{route="/tools/auth-status",outcome="need_auth"}')).toBe(1)
    expect(value('mcp_relay_requests_total{route="/tools/auth-status",outcome="ok"}')).toBe(1)
    expect(value('mcp_relay_requests_total{route="/tools/list-tools",outcome="ok"}')).toBe(2)
    expect(value('mcp_relay_requests_total{route="/oauth/callback",outcome="ok"}')).toBe(1)
    expect(value('mcp_relay_requests_total{route="/oauth/callback",outcome="http_400"}')).toBe(1)

    expect(value('mcp_relay_sign_ins_total{server_id="docs",outcome="completed"}')).toBe(1)
    expect(value('mcp_relay_sign_ins_total{server_id="unknown",outcome="failed"}')).toBe(1)
    expect(value('mcp_relay_tool_cache_lookups_total{server_id="docs",result="miss"}')).toBe(1)
    expect(value('mcp_relay_tool_cache_lookups_total{server_id="docs",result="hit"}')).toBe(1)
    expect(value('mcp_relay_token_refreshes_total{server_id="docs",outcome="token"}')).toBe(1)
    expect(value('mcp_relay_token_refreshes_total{server_id="docs",outcome="transient"}')).toBe(1)
    // tools/list once, tools/call twice, each on carol's pooled session.
    expect(value('mcp_relay_upstream_request_duration_seconds_count{server_id="docs",outcome="ok"}')).toBe(3)
    expect(value('mcp_relay_pool_sessions')).toBeGreaterThanOrEqual(1)

    // No label value carries a user, a ticket or a token.
    const text = [...samples.keys()].join('\n')
    expect(text).not.toContain('carol')
    expect(text).toContain('route="/oauth/start/:ticket"')
    expect(text).not.toContain(new URL(status.body.servers[0].login_url).pathname)
  })

  it('the pool gauge follows the pool', async () => {
    const before = (await scrape()).get('mcp_relay_pool_sessions')
    expect(before).toBe(relay.deps.pool.size())
    expect((await callTool('dave', 'open::whoami')).body.ok).toBe(true)
    expect((await scrape()).get('mcp_relay_pool_sessions')).toBe(relay.deps.pool.size())
    expect(relay.deps.pool.size()).toBe((before ?? 0) + 1)
  })
})

describe('probes and scrapes stay out of the log', () => {
  it('GET /healthz, /readyz and /metrics write no request lines; other routes do', async () => {
    const lines: string[] = []
    const stream = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(...String(chunk).split('\n').filter(Boolean))
        callback()
      },
    })
    const { app } = await makeApp({ deps: { logger: { level: 'info', stream } } })
    for (const url of ['/healthz', '/readyz', '/metrics']) expect((await app.inject({ method: 'GET', url })).statusCode, url).toBe(200)
    expect(lines).toEqual([])
    await app.inject({ method: 'GET', url: '/openapi.json' })
    await app.close()
    expect(lines.map((line) => JSON.parse(line).msg)).toEqual(['request completed'])
  })
})
