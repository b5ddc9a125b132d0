import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { protectedMcpEndpoint, startScriptedServer, type ScriptedServer } from '../peers/scripted-server.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { pressContinue } from '../peers/browser.ts'

// Metadata that the relay must refuse before any authorization request, served by a real HTTP
// peer that publishes exactly what each case needs. Each case is its own MCP server on that peer:
// /mcp-<case> answers 401 pointing at its protected-resource metadata, which names the
// authorization server /as-<case> on the same peer (the configured mcp_url's host is trusted).

interface Case {
  name: string
  /** RFC 9728 `resource`; default the case's MCP URL. */
  resource?: (peer: ScriptedServer) => string
  /** Where the authorization-server metadata is served; default RFC 8414 path insertion. */
  metadataPath?: (asPath: string) => string
  /** RFC 8414 `issuer`; default the authorization server URL. */
  issuer?: (peer: ScriptedServer, asPath: string) => string
  /** `code_challenge_methods_supported`; null leaves it out. Default ['S256']. */
  pkceMethods?: string[] | null
  /** A RegExp the list-tools error must match, or 'sign-in' when a login link is expected. */
  expect: RegExp | 'sign-in'
}

const CASES: Case[] = [
  // MCP 2025-11-25 Authorization, "Authorization Code Protection": no S256 in the metadata, no flow.
  { name: 'pkce-absent', pkceMethods: null, expect: /does not advertise PKCE S256/ },
  { name: 'pkce-plain-only', pkceMethods: ['plain'], expect: /does not advertise PKCE S256/ },
  { name: 'pkce-plain-and-s256', pkceMethods: ['plain', 'S256'], expect: 'sign-in' },
  // RFC 8414 §3.3: the issuer must be the authorization server URL the metadata was read for.
  { name: 'issuer-other-path', issuer: (peer) => `${peer.origin}/as-someone-else`, expect: /has issuer .*as-someone-else, expected/ },
  { name: 'issuer-other-host', issuer: (_peer, asPath) => `https://as.example.com${asPath}`, expect: /has issuer https:\/\/as\.example\.com/ },
  {
    name: 'issuer-oidc-other',
    metadataPath: (asPath) => `/.well-known/openid-configuration${asPath}`,
    issuer: (peer) => `${peer.origin}/`,
    expect: /has issuer .*, expected/,
  },
  { name: 'issuer-oidc-ok', metadataPath: (asPath) => `${asPath}/.well-known/openid-configuration`, expect: 'sign-in' },
  // RFC 9728 §3.3: metadata about another resource is not this server's.
  { name: 'resource-other', resource: () => 'https://mcp.example.com/mcp', expect: /names resource https:\/\/mcp\.example\.com\/mcp, not this server/ },
]

let peer: ScriptedServer
let relay: TestRelay

beforeAll(async () => {
  peer = await startScriptedServer()
  for (const entry of CASES) {
    const mcpPath = `/mcp-${entry.name}`
    const asPath = `/as-${entry.name}`
    const prmPath = `/.well-known/oauth-protected-resource${mcpPath}`
    peer.route(mcpPath, protectedMcpEndpoint(`${peer.origin}${prmPath}`))
    peer.route(prmPath, { json: { resource: entry.resource?.(peer) ?? `${peer.origin}${mcpPath}`, authorization_servers: [`${peer.origin}${asPath}`] } })
    const metadata: Record<string, unknown> = {
      issuer: entry.issuer?.(peer, asPath) ?? `${peer.origin}${asPath}`,
      authorization_endpoint: `${peer.origin}${asPath}/authorize`,
      token_endpoint: `${peer.origin}${asPath}/token`,
      registration_endpoint: `${peer.origin}${asPath}/register`,
      response_types_supported: ['code'],
      token_endpoint_auth_methods_supported: ['none'],
    }
    if (entry.pkceMethods !== null) metadata.code_challenge_methods_supported = entry.pkceMethods ?? ['S256']
    if (entry.metadataPath?.(asPath).includes('openid-configuration')) {
      // OpenID Connect Discovery 1.0 §3: fields an OpenID provider's metadata must have.
      Object.assign(metadata, { jwks_uri: `${peer.origin}${asPath}/jwks`, subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'] })
    }
    peer.route(entry.metadataPath?.(asPath) ?? `/.well-known/oauth-authorization-server${asPath}`, { json: metadata })
    peer.route(`${asPath}/register`, { status: 201, json: { client_id: `client-${entry.name}`, redirect_uris: [] } }, 'POST')
  }
  relay = await startRelay({ servers: CASES.map((entry) => ({ server_id: entry.name, mcp_url: `${peer.origin}/mcp-${entry.name}` })) })
})

afterAll(async () => {
  await relay?.close()
  await peer?.close()
})

describe('discovery refuses unsafe metadata before any authorization request', () => {
  it.each(CASES)('$name', async (entry) => {
    const listed = await relay.post('/tools/list-tools', { user_id: 'ursula', server_id: entry.name })
    expect(listed.status).toBe(200)
    const asRequests = () => peer.requests.filter((request) => request.path.startsWith(`/as-${entry.name}/`))

    if (entry.expect === 'sign-in') {
      expect(listed.body.errors).toEqual([])
      expect(listed.body.auth_required).toHaveLength(1)
      const start = await pressContinue(listed.body.auth_required[0].login_url)
      expect(start.status).toBe(302)
      const authorize = new URL(start.headers.get('location')!)
      expect(authorize.origin + authorize.pathname).toBe(`${peer.origin}/as-${entry.name}/authorize`)
      expect(authorize.searchParams.get('code_challenge_method')).toBe('S256')
      return
    }
    expect(listed.body.auth_required).toEqual([])
    expect(listed.body.errors).toEqual([{ server_id: entry.name, error: expect.stringMatching(entry.expect) }])
    // No registration, no authorization request: nothing was sent to the authorization server's endpoints.
    expect(asRequests()).toEqual([])
    const status = await relay.post('/tools/auth-status', { user_id: 'ursula', server_id: entry.name })
    expect(status.body.servers[0]).toMatchObject({ status: 'error', message: expect.stringMatching(entry.expect) })
    expect(status.body.servers[0].login_url).toBeUndefined()
  })
})
