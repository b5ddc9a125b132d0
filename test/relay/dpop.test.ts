// DPoP (RFC 9449) through the relay's routes, against real peers: oidc-provider issuing
// DPoP-bound tokens (features.dPoP, nonces on for some), and SDK MCP servers of both eras
// (2025-11-25 sessions, 2026-07-28 stateless) that accept a bound token only with the DPoP
// scheme and a fresh proof of its key (test/peers/dpop-proof.ts).
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto'
import { calculateJwkThumbprint, decodeJwt, exportJWK, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { pressContinue, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startModernUpstream, type ModernUpstream } from '../peers/modern-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

let as: AuthorizationServer
let nonceAs: AuthorizationServer
let bearerAs: AuthorizationServer
let docs: McpUpstream
let nonceDocs: McpUpstream
let bearerDocs: McpUpstream
let modernDocs: ModernUpstream
let relay: TestRelay
/** How far the relay's clock runs ahead of the real one: moved forward to make a token look expired. */
let clockOffsetMs = 0

const SERVICE_SECRET = `svc-${randomUUID()}`

beforeAll(async () => {
  ;[as, nonceAs, bearerAs] = await Promise.all([
    startAuthorizationServer({
      dpop: {},
      clients: [{ client_id: 'svc', client_secret: SERVICE_SECRET, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }],
    }),
    startAuthorizationServer({ dpop: { requireNonce: true } }),
    startAuthorizationServer(),
  ])
  ;[docs, nonceDocs, bearerDocs, modernDocs] = await Promise.all([
    startMcpUpstream({ auth: { issuer: as.issuer } }),
    startMcpUpstream({ auth: { issuer: nonceAs.issuer, demandDpopNonce: true } }),
    startMcpUpstream({ auth: { issuer: bearerAs.issuer } }),
    startModernUpstream({ auth: { issuer: nonceAs.issuer, demandDpopNonce: true } }),
  ])
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Docs', mcp_url: docs.url },
      { server_id: 'nonces', description: 'Docs with nonces', mcp_url: nonceDocs.url },
      { server_id: 'bearer-only', description: 'Docs without DPoP', mcp_url: bearerDocs.url, dpop: 'required' },
      { server_id: 'modern', description: 'Docs on MCP 2026-07-28', mcp_url: modernDocs.url },
      { server_id: 'no-dpop', description: 'Docs, DPoP off', mcp_url: docs.url, dpop: 'off' },
      { server_id: 'svc', description: 'Docs for a service', mcp_url: docs.url, grant_type: 'client_credentials', client_id: 'svc', client_secret: SERVICE_SECRET },
    ],
    now: () => Date.now() + clockOffsetMs,
    env: { OAUTH_TRUSTED_HOSTS: [as, nonceAs, bearerAs].map((server) => new URL(server.url).host).join(',') },
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.allSettled([docs, nonceDocs, bearerDocs, modernDocs, as, nonceAs, bearerAs].map((peer) => peer?.close()))
})

async function signIn(userId: string, serverId: string): Promise<void> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: serverId })
  expect(status.body.servers[0]).toMatchObject({ status: 'need_auth' })
  const page = await signInThroughBrowser(status.body.servers[0].login_url, userId)
  expect(page.status).toBe(200)
}

async function whoami(userId: string, serverId: string) {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: `${serverId}::whoami`, input: {} })
  expect(answer.status).toBe(200)
  return answer.body
}

describe('DPoP-bound tokens', () => {
  it('signs in for a token bound to a key the relay keeps sealed with it, and calls with a proof', async () => {
    await signIn('alice', 'docs')
    const stored = await relay.deps.tokens.get({ tenant: 'default', userId: 'alice', serverId: 'docs' })
    expect(stored).toMatchObject({ tokenType: 'DPoP', dpopKey: { alg: 'ES256' } })
    const claims = decodeJwt(stored!.accessToken) as { cnf?: { jkt?: string } }
    const { d: _d, ...publicJwk } = stored!.dpopKey!.jwk
    expect(claims.cnf?.jkt).toBe(await calculateJwkThumbprint(publicJwk as never))

    const before = docs.counters.dpopRequests
    const answer = await whoami('alice', 'docs')
    expect(answer.ok).toBe(true)
    expect(answer.result.structuredContent.sub).toBe('alice')
    expect(docs.counters.dpopRequests).toBeGreaterThan(before)
  })

  it('is refused upstream when replayed without its key: as a bearer token, or with a proof of another key', async () => {
    await signIn('carol', 'docs')
    const stolen = (await relay.deps.tokens.get({ tenant: 'default', userId: 'carol', serverId: 'docs' }))!
    expect(stolen.tokenType).toBe('DPoP')
    const initialize = (headers: Record<string, string>) =>
      fetch(docs.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'thief', version: '1' } } }),
      })

    // As a bearer token (RFC 9449 §7.2), and with a proof of the thief's own key.
    const asBearer = await initialize({ authorization: `Bearer ${stolen.accessToken}` })
    expect(asBearer.status).toBe(401)
    expect(asBearer.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_token"/)
    const thiefKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const proof = await new SignJWT({ htm: 'POST', htu: docs.url, ath: createHash('sha256').update(stolen.accessToken).digest('base64url') })
      .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: await exportJWK(thiefKey.publicKey) })
      .setJti(randomUUID())
      .setIssuedAt()
      .sign(thiefKey.privateKey)
    const withOtherKey = await initialize({ authorization: `DPoP ${stolen.accessToken}`, dpop: proof })
    expect(withOtherKey.status).toBe(401)
    expect(withOtherKey.headers.get('www-authenticate')).toContain('another key')

    // The relay, which holds the key, still gets through with the same token.
    expect((await whoami('carol', 'docs')).result.structuredContent.sub).toBe('carol')
  })

  it('answers the authorization server\'s and the MCP server\'s DPoP-Nonce with one retry each, and refreshes with the same key', async () => {
    const asBefore = nonceAs.tokenRequests.length
    await signIn('dave', 'nonces')
    const exchange = nonceAs.tokenRequests.slice(asBefore)
    // RFC 9449 §8: the first token request is refused for want of the nonce, the retry carries it.
    expect(exchange.map((request) => [request.grantType, request.error ?? 'ok'])).toEqual([['authorization_code', 'use_dpop_nonce'], ['authorization_code', 'ok']])

    const challenged = nonceDocs.counters.dpopNonceChallenges()
    const first = await whoami('dave', 'nonces')
    expect(first.ok).toBe(true)
    expect(first.result.structuredContent.sub).toBe('dave')
    // §9: the MCP server asked once for its nonce; the relay keeps it for the next requests.
    expect(nonceDocs.counters.dpopNonceChallenges()).toBe(challenged + 1)
    expect((await whoami('dave', 'nonces')).ok).toBe(true)
    expect(nonceDocs.counters.dpopNonceChallenges()).toBe(challenged + 1)

    // A refresh (the relay's clock says the token is about to expire) is a DPoP request of the same key.
    const owner = { tenant: 'default', userId: 'dave', serverId: 'nonces' }
    const before = (await relay.deps.tokens.get(owner))!
    clockOffsetMs = 120_000
    try {
      expect((await whoami('dave', 'nonces')).result.structuredContent.sub).toBe('dave')
    } finally {
      clockOffsetMs = 0
    }
    const after = (await relay.deps.tokens.get(owner))!
    expect(after.accessToken).not.toBe(before.accessToken)
    expect(after.dpopKey).toEqual(before.dpopKey)
    expect((decodeJwt(after.accessToken) as { cnf?: { jkt?: string } }).cnf?.jkt).toBe((decodeJwt(before.accessToken) as { cnf?: { jkt?: string } }).cnf?.jkt)
    expect(nonceAs.tokenRequests.filter((request) => request.grantType === 'refresh_token' && request.accountId === 'dave').map((request) => request.error ?? 'ok').at(-1)).toBe('ok')
  })

  it('binds the token of a 2026-07-28 server too: every stateless request carries a proof, the server\'s nonce is asked for once', async () => {
    await signIn('ivan', 'modern')
    const stored = (await relay.deps.tokens.get({ tenant: 'default', userId: 'ivan', serverId: 'modern' }))!
    expect(stored.tokenType).toBe('DPoP')

    const before = { seen: modernDocs.seen.length, bound: modernDocs.dpop.requests, challenged: modernDocs.dpop.nonceChallenges() }
    const first = await whoami('ivan', 'modern')
    expect(first.ok).toBe(true)
    expect(first.result.structuredContent.sub).toBe('ivan')
    expect(modernDocs.dpop.nonceChallenges()).toBe(before.challenged + 1)
    const second = await whoami('ivan', 'modern')
    expect(second.result.structuredContent.sub).toBe('ivan')
    expect(modernDocs.dpop.nonceChallenges()).toBe(before.challenged + 1)
    // Each request the server let through (all but the one refused for the nonce) showed a proof.
    const authorized = modernDocs.seen.slice(before.seen).filter((request) => request.authorized).length
    expect(authorized).toBeGreaterThanOrEqual(2)
    expect(modernDocs.dpop.requests - before.bound).toBe(authorized)
    // The stateless era really was spoken: no initialize reached the server.
    expect(modernDocs.seen.slice(before.seen).map((request) => request.mcpMethod)).not.toContain('initialize')
  })

  it('refuses a server whose authorization server lists no DPoP when the entry says "dpop": "required"', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'erin', server_id: 'bearer-only' })
    expect(status.body.servers[0]).toMatchObject({ status: 'error' })
    expect(status.body.servers[0].message).toContain('"dpop": "required"')
    expect(status.body.servers[0].login_url).toBeUndefined()
  })

  it('uses bearer tokens with "dpop": "off", even where the server offers DPoP', async () => {
    await signIn('frank', 'no-dpop')
    const stored = (await relay.deps.tokens.get({ tenant: 'default', userId: 'frank', serverId: 'no-dpop' }))!
    expect(stored.tokenType).toBeUndefined()
    expect(stored.dpopKey).toBeUndefined()
    expect((decodeJwt(stored.accessToken) as { cnf?: unknown }).cnf).toBeUndefined()
    expect((await whoami('frank', 'no-dpop')).result.structuredContent.sub).toBe('frank')
  })

  it('binds a service account\'s token too', async () => {
    const before = docs.counters.dpopRequests
    expect((await whoami('anyone', 'svc')).ok).toBe(true)
    const stored = (await relay.deps.oauth.serviceTokens.get({ tenant: '*', userId: '*', serverId: 'svc' }))!
    expect(stored.tokenType).toBe('DPoP')
    expect(docs.counters.dpopRequests).toBeGreaterThan(before)
  })

  it('revokes a DPoP-bound grant on reset', async () => {
    await signIn('grace', 'docs')
    const reset = await relay.post('/oauth/reset', { user_id: 'grace', server_id: 'docs' })
    expect(reset.body.servers).toEqual([{ server_id: 'docs', revoked: true }])
  })

  it('reads an MCP server\'s 401 that challenges with the DPoP scheme as a Bearer one: its scope goes into the sign-in', async () => {
    const challenging = await startMcpUpstream({ auth: { issuer: as.issuer, challengeScheme: 'DPoP', challengeScope: 'mcp:read', scopesSupported: ['mcp:read', 'mcp:write'] } })
    const other = await startRelay({
      servers: [{ server_id: 'challenging', mcp_url: challenging.url }],
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    })
    try {
      const status = await other.post('/tools/auth-status', { user_id: 'heidi' })
      expect(status.body.servers[0]).toMatchObject({ status: 'need_auth' })
      const redirect = await pressContinue(status.body.servers[0].login_url)
      expect(redirect.status).toBe(302)
      // MCP "Scope Selection Strategy": the challenge's scope, not scopes_supported (and
      // offline_access, which this authorization server lists: SEP-2207).
      expect(new URL(redirect.headers.get('location')!).searchParams.get('scope')).toBe('mcp:read offline_access')
    } finally {
      await other.close()
      await challenging.close()
    }
  })
})
