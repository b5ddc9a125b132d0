import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { protectedMcpEndpoint, startScriptedServer, type ScriptedServer } from '../peers/scripted-server.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { pressContinue } from '../peers/browser.ts'

// DESIGN.md §3, §6 (SSRF guard): a URL the relay learns from an upstream (a challenge's
// resource_metadata, the authorization servers in protected-resource metadata, the endpoints in
// authorization-server metadata) must be https on a public address, unless its host is trusted
// (OAUTH_TRUSTED_HOSTS, or a configured mcp_url's host:port). `upstream` is the configured MCP
// server (trusted); `target` listens on another port, untrusted, and counts every connection:
// a refusal must happen before anything is sent there.

let upstream: ScriptedServer
let target: ScriptedServer
let relay: TestRelay
let trustingRelay: TestRelay

type Placement =
  | { kind: 'challenge'; url: (target: ScriptedServer) => string }
  | { kind: 'authorization-server'; url: (target: ScriptedServer) => string }
  | { kind: 'endpoint'; field: 'authorization_endpoint' | 'token_endpoint' | 'registration_endpoint'; url: (target: ScriptedServer) => string }

const CASES: Array<{ name: string; placement: Placement; refusal: RegExp }> = [
  { name: 'resource-metadata-http', placement: { kind: 'challenge', url: (t) => `${t.origin}/.well-known/oauth-protected-resource/mcp` }, refusal: /is not https/ },
  { name: 'as-http', placement: { kind: 'authorization-server', url: (t) => t.origin }, refusal: /authorization server http:\/\/127\.0\.0\.1:\d+ is not https/ },
  { name: 'as-https-loopback', placement: { kind: 'authorization-server', url: (t) => `https://127.0.0.1:${t.port}` }, refusal: /private or loopback address/ },
  { name: 'as-https-localhost', placement: { kind: 'authorization-server', url: (t) => `https://localhost:${t.port}/tenant` }, refusal: /private or loopback address/ },
  { name: 'as-https-ipv6-loopback', placement: { kind: 'authorization-server', url: (t) => `https://[::1]:${t.port}` }, refusal: /private or loopback address/ },
  { name: 'as-cloud-metadata', placement: { kind: 'authorization-server', url: () => 'https://169.254.169.254/latest' }, refusal: /private or loopback address/ },
  { name: 'as-private-network', placement: { kind: 'authorization-server', url: () => 'https://10.1.2.3' }, refusal: /private or loopback address/ },
  { name: 'authorization-endpoint-http', placement: { kind: 'endpoint', field: 'authorization_endpoint', url: (t) => `${t.origin}/authorize` }, refusal: /authorization_endpoint http:\/\/127\.0\.0\.1:\d+ is not https/ },
  { name: 'token-endpoint-http', placement: { kind: 'endpoint', field: 'token_endpoint', url: (t) => `${t.origin}/token` }, refusal: /token_endpoint http:\/\/127\.0\.0\.1:\d+ is not https/ },
  { name: 'registration-endpoint-loopback', placement: { kind: 'endpoint', field: 'registration_endpoint', url: (t) => `https://127.0.0.1:${t.port}/register` }, refusal: /registration_endpoint https:\/\/127\.0\.0\.1:\d+ points to a private or loopback address/ },
]

beforeAll(async () => {
  upstream = await startScriptedServer()
  target = await startScriptedServer()
  for (const { name, placement } of CASES) {
    const mcpPath = `/mcp-${name}`
    const asPath = `/as-${name}`
    const prmUrl = placement.kind === 'challenge' ? placement.url(target) : `${upstream.origin}/.well-known/oauth-protected-resource${mcpPath}`
    upstream.route(mcpPath, protectedMcpEndpoint(prmUrl))
    const authorizationServer = placement.kind === 'authorization-server' ? placement.url(target) : `${upstream.origin}${asPath}`
    upstream.route(`/.well-known/oauth-protected-resource${mcpPath}`, {
      json: { resource: `${upstream.origin}${mcpPath}`, authorization_servers: [authorizationServer] },
    })
    upstream.route(`/.well-known/oauth-authorization-server${asPath}`, {
      json: {
        issuer: `${upstream.origin}${asPath}`,
        authorization_endpoint: `${upstream.origin}${asPath}/authorize`,
        token_endpoint: `${upstream.origin}${asPath}/token`,
        registration_endpoint: `${upstream.origin}${asPath}/register`,
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
        ...(placement.kind === 'endpoint' ? { [placement.field]: placement.url(target) } : {}),
      },
    })
    upstream.route(`${asPath}/register`, { status: 201, json: { client_id: `client-${name}`, redirect_uris: [] } }, 'POST')
  }
  const servers = CASES.map(({ name }) => ({ server_id: name, mcp_url: `${upstream.origin}/mcp-${name}` }))
  relay = await startRelay({ servers })
  // The same servers with the target's host:port trusted: then the relay does go there.
  trustingRelay = await startRelay({ servers, env: { OAUTH_TRUSTED_HOSTS: `127.0.0.1:${target.port}` } })
})

afterAll(async () => {
  await Promise.all([relay?.close(), trustingRelay?.close()])
  await Promise.all([upstream?.close(), target?.close()])
})

describe('URLs learned from metadata must be https on public addresses unless trusted', () => {
  it.each(CASES)('$name is refused with nothing sent there', async ({ name, refusal }) => {
    const listed = await relay.post('/tools/list-tools', { user_id: 'victor', server_id: name })
    expect(listed.status).toBe(200)
    expect(listed.body.auth_required).toEqual([])
    expect(listed.body.errors).toEqual([{ server_id: name, error: expect.stringMatching(refusal) }])
    expect(target.connections()).toBe(0)
    expect(target.requests).toEqual([])
  })

  it('goes to the same http URLs once their host:port is in OAUTH_TRUSTED_HOSTS', async () => {
    const reachable = CASES.filter(({ placement }) => placement.url(target).startsWith(target.origin))
    expect(reachable.map(({ name }) => name)).toEqual(['resource-metadata-http', 'as-http', 'authorization-endpoint-http', 'token-endpoint-http'])
    for (const { name, placement } of reachable) {
      const before = target.requests.length
      const listed = await trustingRelay.post('/tools/list-tools', { user_id: 'victor', server_id: name })
      if (placement.kind === 'endpoint') {
        // Discovery accepts the endpoint; the sign-in link is handed out.
        expect(listed.body.auth_required, name).toHaveLength(1)
        const start = await pressContinue(listed.body.auth_required[0].login_url)
        const authorizeOrigin = new URL(start.headers.get('location')!).origin
        expect(authorizeOrigin, name).toBe(placement.field === 'authorization_endpoint' ? target.origin : upstream.origin)
      } else {
        // The target serves no metadata (404), so discovery fails there, after asking.
        expect(target.requests.length, name).toBeGreaterThan(before)
      }
    }
  })
})
