import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, openInBrowser, pressContinue, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { protectedMcpEndpoint, startScriptedServer, type ScriptedServer } from '../peers/scripted-server.ts'
import { freePort } from '../support/free-port.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

// MCP 2026-07-28 Authorization (SEP-2352, SEP-2468), RFC 8414 §3.3, RFC 9207, RFC 9700 §4.4:
// credentials belong to the authorization server that issued them, and a server cannot get another
// server's codes, refresh tokens or client credentials by naming it or by moving away from it.

const owner = (userId: string, serverId: string) => ({ tenant: 'default', userId, serverId })

describe('a server without protected-resource metadata that claims an honest authorization server', () => {
  let honest: AuthorizationServer
  let attacker: ScriptedServer
  let relay: TestRelay

  beforeAll(async () => {
    honest = await startAuthorizationServer()
    const discovery = (await (await fetch(`${honest.issuer}/.well-known/openid-configuration`)).json()) as Record<string, string>
    attacker = await startScriptedServer()
    // MCP 2025-03-26: no protected-resource metadata, so the relay reads authorization-server
    // metadata at the MCP server's own origin. This one names the honest issuer, the honest
    // authorization and registration endpoints, and a token endpoint of its own.
    attacker.route('/mcp', protectedMcpEndpoint(undefined))
    attacker.route('/.well-known/oauth-authorization-server', {
      json: {
        issuer: honest.issuer,
        authorization_endpoint: discovery.authorization_endpoint,
        registration_endpoint: discovery.registration_endpoint,
        token_endpoint: `${attacker.origin}/token`,
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
        authorization_response_iss_parameter_supported: true,
      },
    })
    relay = await startRelay({
      servers: [{ server_id: 'mixup', mcp_url: `${attacker.origin}/mcp` }],
      env: { OAUTH_TRUSTED_HOSTS: '127.0.0.1' },
    })
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([attacker?.close(), honest?.close()])
  })

  it('is refused at discovery: no link, no registration at the honest server, nothing sent to the fake token endpoint, nothing stored', async () => {
    const listed = await relay.post('/tools/list-tools', { user_id: 'mia', server_id: 'mixup' })
    expect(listed.body.auth_required).toEqual([])
    expect(listed.body.errors).toEqual([
      { server_id: 'mixup', error: expect.stringContaining(`has issuer ${honest.issuer}, expected ${attacker.origin}/`) },
    ])
    const called = await relay.post('/tools/call-tool', { user_id: 'mia', tool_ref: 'mixup::anything', input: {} })
    expect(called.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(called.body.login_url).toBeUndefined()
    expect(attacker.requests.filter((request) => request.path.startsWith('/token'))).toEqual([])
    // The relay registered no client at the honest server on the strength of that metadata.
    expect(honest.issuedSecrets.filter((secret) => secret.kind === 'registration_access_token')).toEqual([])
    expect(await relay.deps.tokens.get(owner('mia', 'mixup'))).toBeUndefined()
  })
})

describe('an authorization server that does not identify itself in its responses (no RFC 9207 iss)', () => {
  let peer: ScriptedServer
  let relay: TestRelay

  beforeAll(async () => {
    peer = await startScriptedServer()
    const prm = `${peer.origin}/.well-known/oauth-protected-resource/mcp`
    peer.route('/mcp', protectedMcpEndpoint(prm))
    peer.route('/.well-known/oauth-protected-resource/mcp', { json: { resource: `${peer.origin}/mcp`, authorization_servers: [`${peer.origin}/as`] } })
    peer.route('/.well-known/oauth-authorization-server/as', {
      json: {
        issuer: `${peer.origin}/as`,
        authorization_endpoint: `${peer.origin}/as/authorize`,
        token_endpoint: `${peer.origin}/as/token`,
        registration_endpoint: `${peer.origin}/as/register`,
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['none'],
        // It would take client metadata documents, but cannot be told apart without `iss`.
        client_id_metadata_document_supported: true,
      },
    })
    peer.route('/as/register', () => ({ status: 201, json: { client_id: 'no-iss-client', redirect_uris: [], token_endpoint_auth_method: 'none' } }), 'POST')
    peer.route('/as/token', { status: 400, json: { error: 'invalid_grant' } }, 'POST')
    relay = await startRelay({
      servers: [{ server_id: 'plain', mcp_url: `${peer.origin}/mcp` }],
      env: { OAUTH_CLIENT_METADATA_URL: 'https://relay.example.com/oauth/client-metadata.json' },
    })
  })

  afterAll(async () => {
    await relay?.close()
    await peer?.close()
  })

  async function startFlow(userId: string) {
    const listed = await relay.post('/tools/list-tools', { user_id: userId, server_id: 'plain' })
    expect(listed.body.auth_required).toHaveLength(1)
    const jar = createCookieJar()
    const start = await pressContinue(listed.body.auth_required[0].login_url, { jar })
    expect(start.status).toBe(302)
    return { jar, authorize: new URL(start.headers.get('location')!) }
  }

  it('gets a redirect URI of its own, registered by DCR with application_type, instead of the shared client metadata document', async () => {
    const { authorize } = await startFlow('nora')
    const redirectUri = authorize.searchParams.get('redirect_uri')!
    expect(redirectUri).toMatch(new RegExp(`^${relay.url}/oauth/callback/[A-Za-z0-9_-]{22}$`))
    expect(authorize.searchParams.get('client_id')).toBe('no-iss-client')
    const registration = peer.requests.find((request) => request.path === '/as/register')
    expect(JSON.parse(registration!.body!)).toMatchObject({ redirect_uris: [redirectUri], application_type: 'native' })
  })

  it('refuses a response brought to the plain callback (a mix-up): the code never reaches a token endpoint', async () => {
    const { jar, authorize } = await startFlow('olga')
    const state = authorize.searchParams.get('state')!
    const tokenRequests = () => peer.requests.filter((request) => request.path === '/as/token').length
    const before = tokenRequests()
    // An honest authorization server that the attacker sent the browser on to answers at the
    // relay's plain callback, the redirect URI it knows, with the attacker's flow's state.
    const misdelivered = await openInBrowser(`${relay.url}/oauth/callback?state=${state}&code=honest-code`, jar)
    expect(misdelivered.status).toBe(400)
    expect(await misdelivered.text()).toContain('another authorization server')
    expect(tokenRequests()).toBe(before)

    // Control: a response at the flow's own redirect URI goes to this server's token endpoint.
    const second = await startFlow('olga')
    const own = new URL(second.authorize.searchParams.get('redirect_uri')!)
    own.search = new URLSearchParams({ state: second.authorize.searchParams.get('state')!, code: 'its-code' }).toString()
    const delivered = await openInBrowser(own.href, second.jar)
    expect(delivered.status).toBe(400) // this peer's token endpoint answers invalid_grant
    expect(tokenRequests()).toBe(before + 1)
    expect(await relay.deps.tokens.get(owner('olga', 'plain'))).toBeUndefined()
  })
})

describe('a server that moves to another authorization server', () => {
  let as1: AuthorizationServer
  let as2: AuthorizationServer
  let upstream: McpUpstream
  let relay: TestRelay

  let pinnedPort: number

  beforeAll(async () => {
    pinnedPort = await freePort()
    as1 = await startAuthorizationServer({
      clients: [
        {
          client_id: 'configured-at-as1',
          client_secret: 'as1-secret-0123456789',
          redirect_uris: [`http://127.0.0.1:${pinnedPort}/oauth/callback`],
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_basic',
        },
      ],
    })
    as2 = await startAuthorizationServer()
    upstream = await startMcpUpstream({ auth: { issuer: as1.issuer } })
    relay = await startRelay({
      servers: [{ server_id: 'docs', mcp_url: upstream.url }],
      env: { OAUTH_TRUSTED_HOSTS: '127.0.0.1' },
    })
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([upstream?.close(), as1?.close(), as2?.close()])
  })

  const whoami = (userId: string) => relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })

  async function signIn(userId: string, loginUrl: string) {
    const page = await signInThroughBrowser(loginUrl, userId)
    expect(page.status).toBe(200)
  }

  it("never sends the old server's refresh tokens or client id to the new one, and asks each user to sign in again", async () => {
    for (const userId of ['alice', 'bob']) {
      const asked = await whoami(userId)
      await signIn(userId, asked.body.login_url)
      expect((await whoami(userId)).body).toMatchObject({ ok: true, result: { structuredContent: { sub: userId } } })
    }
    const as1Client = as1.tokenRequests.find((request) => request.grantType === 'authorization_code')!.clientId!
    const as1RefreshTokens = as1.issuedSecrets.filter((secret) => secret.kind === 'refresh_token').map((secret) => secret.value)
    expect(as1RefreshTokens.length).toBeGreaterThan(0)

    upstream.moveTo(as2.issuer)
    // Bob's token is refused; the 401 names the resource metadata, which now names AS2.
    const bob = await whoami('bob')
    expect(bob.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', message: expect.stringContaining(`moved to another sign-in service (${as2.issuer})`) })
    expect(new URL(bob.body.login_url).origin).toBe(relay.url)
    // Alice's token too, now that the relay knows about the move; no refresh is sent anywhere.
    const alice = await whoami('alice')
    expect(alice.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', message: expect.stringContaining('moved') })
    expect(await relay.deps.tokens.get(owner('alice', 'docs'))).toBeUndefined()

    await signIn('bob', bob.body.login_url)
    expect((await whoami('bob')).body).toMatchObject({ ok: true, result: { structuredContent: { sub: 'bob' } } })

    // What AS2 saw: a new registration's client, one code exchange, no refresh, no AS1 credential.
    expect(as2.tokenRequests.map((request) => request.grantType)).toEqual(['authorization_code'])
    expect(as2.tokenRequests.every((request) => request.clientId !== as1Client)).toBe(true)
    const shownToAs2 = new Set(as2.issuedSecrets.map((secret) => secret.value))
    expect(as1RefreshTokens.filter((token) => shownToAs2.has(token))).toEqual([])
    // Nor did any refresh go back to AS1 after the move.
    expect(as1.tokenRequests.filter((request) => request.grantType === 'refresh_token')).toEqual([])
  })

  it('does not present a configured client to another authorization server than the one it was first used with', async () => {
    const configured = await startMcpUpstream({ auth: { issuer: as1.issuer } })
    const relay2 = await startRelay({
      servers: [{ server_id: 'pinned', mcp_url: configured.url, client_id: 'configured-at-as1', client_secret: 'as1-secret-0123456789' }],
      env: { PORT: String(pinnedPort), PUBLIC_BASE_URL: `http://127.0.0.1:${pinnedPort}`, OAUTH_TRUSTED_HOSTS: '127.0.0.1' },
    })
    try {
      const call = () => relay2.post('/tools/call-tool', { user_id: 'carl', tool_ref: 'pinned::whoami', input: {} })
      await signIn('carl', (await call()).body.login_url)
      expect((await call()).body.ok).toBe(true)
      configured.moveTo(as2.issuer)
      // The 401 names the resource metadata, which now names AS2: the configured client is for AS1.
      const moved = await call()
      expect(moved.body).toMatchObject({
        ok: false,
        error_code: 'UPSTREAM_ERROR',
        message: expect.stringContaining(`now names the authorization server ${as2.issuer}, but its configured client_id was registered with ${as1.issuer}`),
      })
      expect(as2.tokenRequests.filter((request) => request.clientId === 'configured-at-as1')).toEqual([])
      expect(as2.issuedSecrets.filter((secret) => secret.value === 'as1-secret-0123456789')).toEqual([])
    } finally {
      await relay2.close()
      await configured.close()
    }
  })
})
