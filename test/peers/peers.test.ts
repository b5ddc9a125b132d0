// The peers work with the libraries the relay uses, talked to directly: SDK discovery and
// registration, openid-client for the authorization code and refresh grants, SDK clients over
// Streamable HTTP and legacy SSE.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { discoverOAuthServerInfo, registerClient } from '@modelcontextprotocol/sdk/client/auth.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { AuthorizationServerMetadata } from '@modelcontextprotocol/sdk/shared/auth.js'
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js'
import { decodeJwt } from 'jose'
import * as oidc from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from './authorization-server.ts'
import { followToCallback, signInThroughBrowser } from './browser.ts'
import { startMcpUpstream, type McpUpstream } from './mcp-upstream.ts'

const REQUEST_TIMEOUT = { timeout: 5000 }

interface CallbackRecorder {
  redirectUri: string
  received: string[]
  close(): Promise<void>
}

// The OAuth client's redirect_uri: a tiny server that records every callback it gets.
async function startCallbackRecorder(): Promise<CallbackRecorder> {
  const received: string[] = []
  const server: Server = createServer((req, res) => {
    received.push(`${origin}${req.url}`)
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><p>signed in</p>')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    redirectUri: `${origin}/callback`,
    received,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}

interface RegisteredClient {
  config: oidc.Configuration
  clientId: string
  metadata: AuthorizationServerMetadata
}

// What the relay does once per (server, authorization server): discover, then register (DCR).
async function discoverAndRegister(upstream: McpUpstream, redirectUri: string): Promise<RegisteredClient> {
  const info = await discoverOAuthServerInfo(upstream.url)
  const metadata = info.authorizationServerMetadata
  if (!metadata) throw new Error('no authorization server metadata')
  const registered = await registerClient(info.authorizationServerUrl, {
    metadata,
    clientMetadata: {
      redirect_uris: [redirectUri],
      client_name: 'peers test',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    },
    scope: 'mcp:read mcp:write',
  })
  const config = new oidc.Configuration(metadata as oidc.ServerMetadata, registered.client_id, undefined, oidc.None())
  oidc.allowInsecureRequests(config)
  return { config, clientId: registered.client_id, metadata }
}

// What the relay does per sign-in: authorization URL with PKCE and resource, browser, code exchange.
async function signIn(
  client: { config: oidc.Configuration }, resource: string, account: string, recorder: CallbackRecorder,
  scope = 'mcp:read mcp:write',
) {
  const pkceCodeVerifier = oidc.randomPKCECodeVerifier()
  const state = oidc.randomState()
  const authorizationUrl = oidc.buildAuthorizationUrl(client.config, {
    redirect_uri: recorder.redirectUri,
    scope,
    code_challenge: await oidc.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state,
    resource,
  })
  const page = await signInThroughBrowser(authorizationUrl.href, account)
  expect(page.status).toBe(200)
  expect(recorder.received).toContain(page.callbackUrl)
  const tokens = await oidc.authorizationCodeGrant(
    client.config, new URL(page.callbackUrl), { pkceCodeVerifier, expectedState: state }, { resource },
  )
  return { tokens, callbackUrl: new URL(page.callbackUrl) }
}

async function connectStreamable(url: string, token?: string) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
  })
  const client = new Client({ name: 'peers-test', version: '1.0.0' })
  await client.connect(transport, REQUEST_TIMEOUT)
  return { client, transport }
}

async function whoami(client: Client) {
  const result = await client.callTool({ name: 'whoami', arguments: {} }, undefined, REQUEST_TIMEOUT)
  return result.structuredContent as { sub: string | null; aud?: string | string[]; scope?: string; client_id?: string }
}

async function eventually<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function rpc(method: string, params: Record<string, unknown> = {}) {
  return JSON.stringify({ jsonrpc: '2.0', id: 1, method, params })
}

const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

describe('peers against the SDK and openid-client', () => {
  let as: AuthorizationServer
  let upstream: McpUpstream
  let recorder: CallbackRecorder
  let registered: RegisteredClient

  beforeAll(async () => {
    as = await startAuthorizationServer()
    upstream = await startMcpUpstream({ auth: { issuer: as.issuer } })
    recorder = await startCallbackRecorder()
    registered = await discoverAndRegister(upstream, recorder.redirectUri)
  })
  afterAll(async () => {
    await Promise.all([upstream?.close(), as?.close(), recorder?.close()])
  })

  it('is discovered through protected-resource metadata, with PKCE, iss and DCR advertised', async () => {
    const info = await discoverOAuthServerInfo(upstream.url)
    expect(info.authorizationServerUrl).toBe(as.issuer)
    expect(info.resourceMetadata).toMatchObject({
      resource: upstream.url, authorization_servers: [as.issuer], bearer_methods_supported: ['header'],
    })
    expect(upstream.resourceMetadataUrl).toBe(`${new URL(upstream.url).origin}/.well-known/oauth-protected-resource/mcp`)
    expect(info.authorizationServerMetadata).toMatchObject({
      issuer: as.issuer,
      code_challenge_methods_supported: ['S256'],
      authorization_response_iss_parameter_supported: true,
      registration_endpoint: `${as.issuer}/reg`,
    })
  })

  it('signs a user in through the browser and issues a JWT for the MCP server that whoami reports', async () => {
    const { tokens, callbackUrl } = await signIn(registered, upstream.url, 'alice', recorder)
    expect(callbackUrl.searchParams.get('iss')).toBe(as.issuer)
    expect(tokens.refresh_token).toBeTruthy()
    const claims = decodeJwt(tokens.access_token)
    expect(claims).toMatchObject({ iss: as.issuer, sub: 'alice', aud: upstream.url, client_id: registered.clientId })
    expect(String(claims.scope).split(' ').sort()).toEqual(['mcp:read', 'mcp:write'])
    expect(as.tokenRequests.at(-1)).toMatchObject({
      grantType: 'authorization_code', resource: upstream.url, clientId: registered.clientId, accountId: 'alice', ok: true,
    })

    const initializeBefore = upstream.counters.initialize
    const { client } = await connectStreamable(upstream.url, tokens.access_token)
    try {
      expect(await whoami(client)).toMatchObject({ sub: 'alice', aud: upstream.url, client_id: registered.clientId })
      const echoed = await client.callTool({ name: 'echo', arguments: { text: 'hi' } }, undefined, REQUEST_TIMEOUT)
      expect(echoed.content).toEqual([{ type: 'text', text: 'hi' }])
      const failed = await client.callTool({ name: 'fail', arguments: {} }, undefined, REQUEST_TIMEOUT)
      expect(failed.isError).toBe(true)
      expect(upstream.counters.initialize).toBe(initializeBefore + 1)
      expect(upstream.counters.toolsCall).toBeGreaterThanOrEqual(3)
      expect(upstream.counters.sessionsOpen()).toBeGreaterThanOrEqual(1)
    } finally {
      await client.close()
    }
  })

  it('rotates refresh tokens, and a replayed one revokes the grant', async () => {
    const { tokens } = await signIn(registered, upstream.url, 'bob', recorder)
    const before = as.refreshCount()

    const refreshed = await oidc.refreshTokenGrant(registered.config, tokens.refresh_token!, { resource: upstream.url })
    expect(as.refreshCount()).toBe(before + 1)
    expect(as.refreshCount('bob')).toBe(1)
    expect(refreshed.refresh_token).toBeTruthy()
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token)
    expect(decodeJwt(refreshed.access_token)).toMatchObject({ sub: 'bob', aud: upstream.url })

    // Without `resource`, the granted resource is used.
    const again = await oidc.refreshTokenGrant(registered.config, refreshed.refresh_token!)
    expect(decodeJwt(again.access_token)).toMatchObject({ sub: 'bob', aud: upstream.url })
    expect(as.refreshCount('bob')).toBe(2)

    await expect(oidc.refreshTokenGrant(registered.config, tokens.refresh_token!, { resource: upstream.url }))
      .rejects.toMatchObject({ error: 'invalid_grant' })
    // oidc-provider revokes the whole grant on reuse: the newest refresh token is dead too.
    await expect(oidc.refreshTokenGrant(registered.config, again.refresh_token!, { resource: upstream.url }))
      .rejects.toMatchObject({ error: 'invalid_grant' })
    expect(as.refreshCount('bob')).toBe(2)
    expect(as.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token', ok: false, error: 'invalid_grant' })
  })

  it('fails the token endpoint on demand without touching the refresh token', async () => {
    const { tokens } = await signIn(registered, upstream.url, 'carol', recorder)
    as.failTokenEndpoint(503)
    try {
      await expect(oidc.refreshTokenGrant(registered.config, tokens.refresh_token!, { resource: upstream.url }))
        .rejects.toThrow()
      expect(as.tokenRequests.at(-1)).toMatchObject({
        grantType: 'refresh_token', resource: upstream.url, clientId: registered.clientId, ok: false, error: 'http_503',
      })
    } finally {
      as.failTokenEndpoint(undefined)
    }
    await oidc.refreshTokenGrant(registered.config, tokens.refresh_token!, { resource: upstream.url })
    expect(as.refreshCount('carol')).toBe(1)
  })

  it('refuses requests without a valid token for this resource, with RFC 6750 challenges', async () => {
    const unauthorizedBefore = upstream.counters.unauthorized
    const missing = await fetch(upstream.url, { method: 'POST', headers: MCP_HEADERS, body: rpc('tools/list') })
    expect(missing.status).toBe(401)
    expect(missing.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${upstream.resourceMetadataUrl}"`)

    const garbage = await fetch(upstream.url, {
      method: 'POST', headers: { ...MCP_HEADERS, authorization: 'Bearer not.a.jwt' }, body: rpc('tools/list'),
    })
    expect(garbage.status).toBe(401)
    expect(garbage.headers.get('www-authenticate')).toMatch(/^Bearer error="invalid_token", error_description="[^"]*", resource_metadata="/)

    // A token for another resource (audience) is refused too.
    const other = await startMcpUpstream({ auth: { issuer: as.issuer } })
    try {
      const { tokens } = await signIn(registered, other.url, 'dave', recorder)
      const wrongAudience = await fetch(upstream.url, {
        method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${tokens.access_token}` }, body: rpc('tools/list'),
      })
      expect(wrongAudience.status).toBe(401)
      expect(wrongAudience.headers.get('www-authenticate')).toContain('error="invalid_token"')
    } finally {
      await other.close()
    }
    expect(upstream.counters.unauthorized).toBe(unauthorizedBefore + 3)
  })

  it('binds a session to the user who opened it', async () => {
    const [alice, mallory] = await Promise.all([
      signIn(registered, upstream.url, 'alice', recorder), signIn(registered, upstream.url, 'mallory', recorder),
    ])
    const { client, transport } = await connectStreamable(upstream.url, alice.tokens.access_token)
    try {
      const before = upstream.counters.foreignSession
      const hijack = await fetch(upstream.url, {
        method: 'POST',
        headers: {
          ...MCP_HEADERS, authorization: `Bearer ${mallory.tokens.access_token}`,
          'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-06-18',
        },
        body: rpc('tools/list'),
      })
      expect(hijack.status).toBe(404)
      expect(upstream.counters.foreignSession).toBe(before + 1)
      expect(await whoami(client)).toMatchObject({ sub: 'alice' })
    } finally {
      await client.close()
    }
  })

  it('answers 403 insufficient_scope for a tool that needs more scope', async () => {
    const { tokens } = await signIn(registered, upstream.url, 'erin', recorder, 'mcp:read')
    const { client, transport } = await connectStreamable(upstream.url, tokens.access_token)
    try {
      upstream.setScopesRequiredFor('echo', ['mcp:write'])
      const response = await fetch(upstream.url, {
        method: 'POST',
        headers: {
          ...MCP_HEADERS, authorization: `Bearer ${tokens.access_token}`,
          'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-06-18',
        },
        body: rpc('tools/call', { name: 'echo', arguments: { text: 'x' } }),
      })
      expect(response.status).toBe(403)
      expect(response.headers.get('www-authenticate')).toBe(
        `Bearer error="insufficient_scope", scope="mcp:write", resource_metadata="${upstream.resourceMetadataUrl}", error_description="additional scope required"`,
      )
      await expect(client.callTool({ name: 'echo', arguments: { text: 'x' } }, undefined, REQUEST_TIMEOUT))
        .rejects.toMatchObject({ code: 403 })
      expect(await whoami(client)).toMatchObject({ sub: 'erin', scope: 'mcp:read' })

      // Step-up: signing in again for the larger scope set gives a token the tool accepts.
      const stepped = await signIn(registered, upstream.url, 'erin', recorder, 'mcp:read mcp:write')
      const { client: steppedClient } = await connectStreamable(upstream.url, stepped.tokens.access_token)
      try {
        const echoed = await steppedClient.callTool({ name: 'echo', arguments: { text: 'x' } }, undefined, REQUEST_TIMEOUT)
        expect(echoed.content).toEqual([{ type: 'text', text: 'x' }])
      } finally {
        await steppedClient.close()
      }
    } finally {
      upstream.setScopesRequiredFor('echo', [])
      await client.close()
    }
  })

  it('can require scopes for every request', async () => {
    const strict = await startMcpUpstream({ auth: { issuer: as.issuer, requiredScopes: ['mcp:write'] } })
    try {
      const { tokens } = await signIn(registered, strict.url, 'judy', recorder, 'mcp:read')
      const refused = await fetch(strict.url, {
        method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${tokens.access_token}` }, body: rpc('initialize'),
      })
      expect(refused.status).toBe(403)
      expect(refused.headers.get('www-authenticate')).toContain('error="insufficient_scope", scope="mcp:write"')
      expect(strict.counters).toMatchObject({ forbidden: 1, initialize: 0, requests: 1 })
    } finally {
      await strict.close()
    }
  })

  it('serves the legacy HTTP+SSE transport only', async () => {
    const sse = await startMcpUpstream({ auth: { issuer: as.issuer }, transport: 'sse' })
    try {
      expect(sse.url).toMatch(/\/sse$/)
      const info = await discoverOAuthServerInfo(sse.url)
      expect(info.resourceMetadata?.resource).toBe(sse.url)
      const { tokens } = await signIn(registered, sse.url, 'frank', recorder)
      const authorization = `Bearer ${tokens.access_token}`

      const post = await fetch(sse.url, { method: 'POST', headers: { ...MCP_HEADERS, authorization }, body: rpc('initialize') })
      expect(post.status).toBe(405)

      const client = new Client({ name: 'peers-test', version: '1.0.0' })
      await client.connect(new SSEClientTransport(new URL(sse.url), { requestInit: { headers: { Authorization: authorization } } }), REQUEST_TIMEOUT)
      try {
        expect(sse.counters.sessionsOpen()).toBe(1)
        expect(await whoami(client)).toMatchObject({ sub: 'frank', aud: sse.url })
        const changed = new Promise<void>((resolve) => {
          client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve())
        })
        await sse.notifyToolsChanged()
        await eventually(changed, 2000, 'tools/list_changed over SSE')
      } finally {
        await client.close()
      }
    } finally {
      await sse.close()
    }
  })

  it('signs in at an issuer with a path, with a pre-registered client_secret_post client', async () => {
    const tenant = await startAuthorizationServer({
      issuerPath: '/tenant1',
      registration: false,
      oauthMetadata: true,
      clients: [{
        client_id: 'relay', client_secret: 'relay-secret', token_endpoint_auth_method: 'client_secret_post',
        redirect_uris: [recorder.redirectUri], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
      }],
    })
    const tenantUpstream = await startMcpUpstream({ auth: { issuer: tenant.issuer }, protectedResourceMetadata: 'root' })
    try {
      expect(tenant.issuer).toBe(`${tenant.url}/tenant1`)
      const info = await discoverOAuthServerInfo(tenantUpstream.url)
      expect(info.authorizationServerUrl).toBe(tenant.issuer)
      expect(info.authorizationServerMetadata?.token_endpoint).toBe(`${tenant.issuer}/token`)
      expect(info.authorizationServerMetadata?.registration_endpoint).toBeUndefined()

      const config = new oidc.Configuration(
        info.authorizationServerMetadata as oidc.ServerMetadata, 'relay', undefined, oidc.ClientSecretPost('relay-secret'),
      )
      oidc.allowInsecureRequests(config)
      const { tokens } = await signIn({ config }, tenantUpstream.url, 'grace', recorder)
      const { client } = await connectStreamable(tenantUpstream.url, tokens.access_token)
      try {
        expect(await whoami(client)).toMatchObject({ sub: 'grace', client_id: 'relay' })
      } finally {
        await client.close()
      }
    } finally {
      await Promise.all([tenantUpstream.close(), tenant.close()])
    }
  })

  it('stops before the callback for tests that replay or forge it', async () => {
    const state = oidc.randomState()
    const verifier = oidc.randomPKCECodeVerifier()
    const authorizationUrl = oidc.buildAuthorizationUrl(registered.config, {
      redirect_uri: recorder.redirectUri, scope: 'mcp:read', state, resource: upstream.url,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
    })
    const received = recorder.received.length
    const callbackUrl = new URL(await followToCallback(authorizationUrl.href, 'heidi'))
    expect(recorder.received.length).toBe(received)
    expect(callbackUrl.href.startsWith(recorder.redirectUri)).toBe(true)
    expect(callbackUrl.searchParams.get('state')).toBe(state)
    expect(callbackUrl.searchParams.get('code')).toBeTruthy()
    // The code works once.
    await oidc.authorizationCodeGrant(registered.config, callbackUrl, { pkceCodeVerifier: verifier, expectedState: state }, { resource: upstream.url })
    await expect(oidc.authorizationCodeGrant(registered.config, callbackUrl, { pkceCodeVerifier: verifier, expectedState: state }, { resource: upstream.url }))
      .rejects.toMatchObject({ error: 'invalid_grant' })
  })
})

describe('short-lived access tokens', () => {
  it('are refused once expired', async () => {
    // Long enough to sign in and connect on a loaded machine; then the first refusal is awaited
    // (bounded), not a fixed sleep past the expiry.
    const as = await startAuthorizationServer({ accessTokenTtlSeconds: 4 })
    const upstream = await startMcpUpstream({ auth: { issuer: as.issuer } })
    const recorder = await startCallbackRecorder()
    try {
      const { tokens } = await signIn(await discoverAndRegister(upstream, recorder.redirectUri), upstream.url, 'ivan', recorder)
      const issuedAt = Date.now()
      expect(tokens.expires_in).toBe(4)
      const { client } = await connectStreamable(upstream.url, tokens.access_token)
      try {
        let refusal: unknown
        while (refusal === undefined && Date.now() - issuedAt < 15_000) {
          refusal = await whoami(client).then(() => undefined, (error: unknown) => error)
          if (refusal === undefined) await new Promise((resolve) => setTimeout(resolve, 200))
        }
        expect(refusal).toMatchObject({ code: 401 })
        // Not before the token's four seconds (less a second of clock skew tolerance at most).
        expect(Date.now() - issuedAt).toBeGreaterThanOrEqual(3000)
      } finally {
        await client.close()
      }
    } finally {
      await Promise.all([upstream.close(), as.close(), recorder.close()])
    }
  })
})

describe('open MCP servers', () => {
  let upstream: McpUpstream
  beforeAll(async () => {
    upstream = await startMcpUpstream({ toolCount: 7, pageSize: 4 })
  })
  afterAll(async () => {
    await upstream?.close()
  })

  it('need no token and have no protected-resource metadata', async () => {
    expect(upstream.resourceMetadataUrl).toBeUndefined()
    const prm = await fetch(`${new URL(upstream.url).origin}/.well-known/oauth-protected-resource/mcp`)
    expect(prm.status).toBe(404)
    const { client } = await connectStreamable(upstream.url)
    try {
      expect(await whoami(client)).toEqual({ sub: null })
    } finally {
      await client.close()
    }
  })

  it('paginate tools/list with a cursor', async () => {
    const { client } = await connectStreamable(upstream.url)
    try {
      const before = upstream.counters.toolsList
      const names: string[] = []
      const pageSizes: number[] = []
      let cursor: string | undefined
      do {
        const page = await client.listTools(cursor ? { cursor } : {}, REQUEST_TIMEOUT)
        names.push(...page.tools.map((tool) => tool.name))
        pageSizes.push(page.tools.length)
        cursor = page.nextCursor
      } while (cursor)
      expect(pageSizes).toEqual([4, 4, 2])
      expect(names).toEqual(['whoami', 'echo', 'fail', ...Array.from({ length: 7 }, (_, i) => `tool_${i}`)])
      expect(upstream.counters.toolsList).toBe(before + 3)
      await expect(client.listTools({ cursor: 'bogus' }, REQUEST_TIMEOUT)).rejects.toThrow(/Invalid cursor/)
    } finally {
      await client.close()
    }
  })

  it('notify open sessions that the tool list changed', async () => {
    const { client } = await connectStreamable(upstream.url)
    try {
      const changed = new Promise<void>((resolve) => {
        client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve())
      })
      await upstream.notifyToolsChanged()
      await eventually(changed, 2000, 'tools/list_changed')
      const all = []
      let cursor: string | undefined
      do {
        const page = await client.listTools(cursor ? { cursor } : {}, REQUEST_TIMEOUT)
        all.push(...page.tools.map((tool) => tool.name))
        cursor = page.nextCursor
      } while (cursor)
      expect(all).toContain('added_1')
      const result = await client.callTool({ name: 'added_1', arguments: {} }, undefined, REQUEST_TIMEOUT)
      expect(result.content).toEqual([{ type: 'text', text: 'added_1' }])
    } finally {
      await client.close()
    }
  })

  it('answer 404 for a dropped session', async () => {
    const { client, transport } = await connectStreamable(upstream.url)
    try {
      const sessionId = transport.sessionId!
      expect(upstream.counters.sessionsOpen()).toBeGreaterThanOrEqual(1)
      upstream.dropSessions()
      expect(upstream.counters.sessionsOpen()).toBe(0)
      const response = await fetch(upstream.url, {
        method: 'POST',
        headers: { ...MCP_HEADERS, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
        body: rpc('tools/list'),
      })
      expect(response.status).toBe(404)
      const error = await client.listTools({}, REQUEST_TIMEOUT).catch((err: unknown) => err)
      expect(error).toBeInstanceOf(StreamableHTTPError)
      expect((error as StreamableHTTPError).code).toBe(404)
    } finally {
      await client.close()
    }
  })
})

describe('protected-resource metadata placement', () => {
  it('is served at the root with a challenge scope, or not at all', async () => {
    const issuer = 'http://127.0.0.1:9/unused'
    const root = await startMcpUpstream({ auth: { issuer, challengeScope: 'mcp:read' }, protectedResourceMetadata: 'root' })
    const none = await startMcpUpstream({ auth: { issuer }, protectedResourceMetadata: 'none' })
    try {
      const origin = new URL(root.url).origin
      expect(root.resourceMetadataUrl).toBe(`${origin}/.well-known/oauth-protected-resource`)
      const prm = await fetch(root.resourceMetadataUrl!)
      expect(await prm.json()).toMatchObject({ resource: root.url, authorization_servers: [issuer] })
      const refused = await fetch(root.url, { method: 'POST', headers: MCP_HEADERS, body: rpc('initialize') })
      expect(refused.headers.get('www-authenticate')).toBe(`Bearer resource_metadata="${root.resourceMetadataUrl}", scope="mcp:read"`)

      expect(none.resourceMetadataUrl).toBeUndefined()
      expect((await fetch(`${new URL(none.url).origin}/.well-known/oauth-protected-resource/mcp`)).status).toBe(404)
      const bare = await fetch(none.url, { method: 'POST', headers: MCP_HEADERS, body: rpc('initialize') })
      expect(bare.status).toBe(401)
      expect(bare.headers.get('www-authenticate')).toBe('Bearer')
    } finally {
      await Promise.all([root.close(), none.close()])
    }
  })
})
