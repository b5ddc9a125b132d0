import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

// MCP 2025-03-26 "Backwards Compatibility": a server that speaks only the legacy HTTP+SSE
// transport refuses the Streamable HTTP POST (405), and the relay falls back to SSE. Tools and
// sign-in behave as with any other server.

let as: AuthorizationServer
let legacy: McpUpstream
let openLegacy: McpUpstream
let streamAuthOnly: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer()
  legacy = await startMcpUpstream({ auth: { issuer: as.issuer }, transport: 'sse' })
  openLegacy = await startMcpUpstream({ transport: 'sse' })
  streamAuthOnly = await startMcpUpstream({ auth: { issuer: as.issuer }, transport: 'sse', sseRoutesBeforeAuth: true })
  relay = await startRelay({
    servers: [
      { server_id: 'legacy', description: 'Legacy SSE server', mcp_url: legacy.url },
      { server_id: 'open-legacy', mcp_url: openLegacy.url },
      { server_id: 'stream-auth', mcp_url: streamAuthOnly.url },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([legacy?.close(), openLegacy?.close(), streamAuthOnly?.close(), as?.close()])
})

describe('legacy HTTP+SSE upstreams', () => {
  it('lists and calls the tools of an open SSE server', async () => {
    const listed = await relay.post('/tools/list-tools', { user_id: 'carol', server_id: 'open-legacy' })
    expect(listed.body.errors).toEqual([])
    expect(listed.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toEqual(
      expect.arrayContaining(['open-legacy::whoami', 'open-legacy::echo']),
    )
    const echo = await relay.post('/tools/call-tool', { user_id: 'carol', tool_ref: 'open-legacy::echo', input: { text: 'over sse' } })
    expect(echo.body).toMatchObject({ ok: true, result: { isError: false, content: [{ type: 'text', text: 'over sse' }] } })
  })

  it('signs a user in to a protected SSE server and calls its tools with their token', async () => {
    const before = await relay.post('/tools/list-tools', { user_id: 'dave', server_id: 'legacy' })
    expect(before.body.errors).toEqual([])
    expect(before.body.tools).toEqual([])
    expect(before.body.auth_required).toEqual([expect.objectContaining({ server_id: 'legacy', status: 'need_auth' })])

    const page = await signInThroughBrowser(before.body.auth_required[0].login_url, 'dave')
    expect(page.status).toBe(200)
    // The token is for the SSE endpoint: RFC 8707 resource = the configured URL.
    const exchange = as.tokenRequests.find((request) => request.grantType === 'authorization_code' && request.accountId === 'dave')
    expect(exchange).toMatchObject({ ok: true, resource: legacy.url })

    const after = await relay.post('/tools/list-tools', { user_id: 'dave', server_id: 'legacy' })
    expect(after.body.auth_required).toEqual([])
    expect(after.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toEqual(expect.arrayContaining(['legacy::whoami', 'legacy::echo']))

    const whoami = await relay.post('/tools/call-tool', { user_id: 'dave', tool_ref: 'legacy::whoami', input: {} })
    expect(whoami.body).toMatchObject({ ok: true, result: { structuredContent: { sub: 'dave', aud: legacy.url } } })
    expect(legacy.counters.toolsCall).toBeGreaterThan(0)
  })

  it('answers NOT_AUTHORIZED for a user who has not signed in, without touching the signed-in session', async () => {
    const answer = await relay.post('/tools/call-tool', { user_id: 'erin', tool_ref: 'legacy::whoami', input: {} })
    expect(answer.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', server_id: 'legacy' })
    expect(answer.body.login_url).toContain('/oauth/start/')
    expect(legacy.counters.foreignSession).toBe(0)
  })

  it('asks for sign-in when the 401 comes on the SSE stream itself, and stops that failed stream', async () => {
    // The POST is refused with 405 before any token check; the GET stream then answers 401.
    const before = await relay.post('/tools/list-tools', { user_id: 'frank', server_id: 'stream-auth' })
    expect(before.body.errors).toEqual([])
    expect(before.body.auth_required).toEqual([expect.objectContaining({ server_id: 'stream-auth', status: 'need_auth' })])
    // The refused EventSource is closed, not left reconnecting with its own retry timer.
    const refused = streamAuthOnly.counters.unauthorized
    await new Promise((resolve) => setTimeout(resolve, 3500))
    expect(streamAuthOnly.counters.unauthorized).toBe(refused)

    expect((await signInThroughBrowser(before.body.auth_required[0].login_url, 'frank')).status).toBe(200)
    const whoami = await relay.post('/tools/call-tool', { user_id: 'frank', tool_ref: 'stream-auth::whoami', input: {} })
    expect(whoami.body).toMatchObject({ ok: true, result: { structuredContent: { sub: 'frank', aud: streamAuthOnly.url } } })
  })
})
