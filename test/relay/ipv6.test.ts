// IPv6 wherever a host is configured (DESIGN.md §3, issue 12): the relay listening on `::`
// (reached here at [::1]), PUBLIC_BASE_URL with an IPv6 literal, an mcp_url at [::1], and
// OAUTH_TRUSTED_HOSTS=localhost,::1 (which used to stop start-up). Real peers: SDK MCP servers on
// [::1], oidc-provider on 127.0.0.1, the relay as `npm start` runs it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { freePort } from '../support/free-port.ts'
import { startRelayProcess, type RelayProcess } from '../support/relay-process.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

let as: AuthorizationServer
let open: McpUpstream
let docs: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer()
  ;[open, docs] = await Promise.all([startMcpUpstream({ host: '::1' }), startMcpUpstream({ host: '::1', auth: { issuer: as.issuer } })])
  const port = await freePort()
  relay = await startRelay({
    servers: [
      { server_id: 'open', mcp_url: open.url },
      { server_id: 'docs', mcp_url: docs.url },
    ],
    env: {
      PORT: String(port),
      HOST: '::',
      PUBLIC_BASE_URL: `http://[::1]:${port}`,
      // The authorization server is on 127.0.0.1 (plain http): trusted by host:port.
      OAUTH_TRUSTED_HOSTS: `localhost,::1,${new URL(as.issuer).host}`,
    },
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([open?.close(), docs?.close(), as?.close()])
})

describe('IPv6 hosts', () => {
  it('the relay on HOST=:: answers at [::1], and calls an MCP server at http://[::1]:PORT/mcp', async () => {
    expect(relay.url).toMatch(/^http:\/\/\[::1\]:\d+$/)
    expect(open.url).toMatch(/^http:\/\/\[::1\]:\d+\/mcp$/)
    const listed = await relay.post('/tools/list-tools', { user_id: 'u-v6', server_id: 'open' })
    expect(listed.status).toBe(200)
    expect(listed.body.errors).toEqual([])
    expect(listed.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toContain('open::echo')
    const call = await relay.post('/tools/call-tool', { user_id: 'u-v6', tool_ref: 'open::echo', input: { text: 'over IPv6' } })
    expect(call.body).toMatchObject({ ok: true, result: { content: [{ type: 'text', text: 'over IPv6' }] } })
  })

  it('signs in to a protected server at [::1] with PUBLIC_BASE_URL at [::1], then calls it', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'u-v6', server_id: 'docs' })
    expect(status.body.servers[0]).toMatchObject({ status: 'need_auth', login_url: expect.stringMatching(/^http:\/\/\[::1\]:\d+\/oauth\/start\//) })
    const page = await signInThroughBrowser(status.body.servers[0].login_url, 'v6-account')
    expect(page.status).toBe(200)
    const whoami = await relay.post('/tools/call-tool', { user_id: 'u-v6', tool_ref: 'docs::whoami', input: {} })
    expect(whoami.body).toMatchObject({ ok: true })
    expect(JSON.stringify(whoami.body.result)).toContain('v6-account')
  })
})

describe('npm start with IPv6 settings', () => {
  let child: RelayProcess | undefined
  afterAll(() => child?.stop())

  it('starts with HOST=::, OAUTH_TRUSTED_HOSTS=localhost,::1 and an IPv6 PUBLIC_BASE_URL, and answers on both families', async () => {
    const port = await freePort()
    child = await startRelayProcess(
      {
        HOST: '::',
        PUBLIC_BASE_URL: `http://[::1]:${port}`,
        OAUTH_TRUSTED_HOSTS: 'localhost,::1',
        STORE_URL: 'memory://',
        MCP_SERVERS_JSON: JSON.stringify({ servers: [{ server_id: 'open', mcp_url: open.url }] }),
      },
      { port },
    )
    const overIpv6 = await fetch(`http://[::1]:${port}/openapi.json`, { signal: AbortSignal.timeout(10_000) })
    expect(overIpv6.status).toBe(200)
    expect(((await overIpv6.json()) as { servers: Array<{ url: string }> }).servers).toEqual([{ url: `http://[::1]:${port}` }])
    // child.url is http://127.0.0.1:PORT: a socket on :: takes IPv4 too.
    const call = await child.post('/tools/call-tool', { user_id: 'u-v6', tool_ref: 'open::echo', input: { text: 'hi' } })
    expect(call.body).toMatchObject({ ok: true, result: { content: [{ type: 'text', text: 'hi' }] } })
  })
})
