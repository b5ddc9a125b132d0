// Enterprise-managed authorization (SEP-990, grant_type "enterprise") through the relay's routes,
// against real peers: an identity provider (oidc-provider: OpenID Connect sign-in, refresh, RFC
// 7009 revocation, and RFC 8693 token exchange issuing ID-JAGs), and for each MCP server an
// authorization server (oidc-provider) that redeems ID-JAGs with the JWT bearer grant (one of
// them issuing DPoP-bound tokens) and an SDK MCP server that says whose token it got.
import { randomBytes, randomUUID } from 'node:crypto'
import { importJWK, SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { getSigningKey, startAuthorizationServer, type AuthorizationServer, type ClientMetadata } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { idJagIssuer, JWT_BEARER, jwtBearerGrant, TOKEN_EXCHANGE, type IdJagIssuer, type JwtBearerGrant } from '../peers/extension-grants.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { captureLogLines } from '../battery/harness.ts'
import { freePort } from '../support/free-port.ts'
import { REDIS_URL } from '../support/services.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const IDP_SECRET = `idp-${randomUUID()}`
const CRM_SECRET = `crm-${randomUUID()}`
const DOCS_SECRET = `docs-${randomUUID()}`

const jwtBearerClient = (clientId: string, secret: string): ClientMetadata => ({
  client_id: clientId,
  client_secret: secret,
  grant_types: [JWT_BEARER],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
})

let idp: AuthorizationServer
let idJags: IdJagIssuer
let crmAs: AuthorizationServer
let docsAs: AuthorizationServer
let crmGrant: JwtBearerGrant
let docsGrant: JwtBearerGrant
let crm: McpUpstream
let docs: McpUpstream
let relay: TestRelay
let relayPort: number
/** How far the relay's clock runs ahead of the real one: moved forward to make tokens look expired. */
let clockOffsetMs = 0
const logs = captureLogLines()

beforeAll(async () => {
  relayPort = await freePort()
  const trustedIdps: string[] = []
  crmGrant = jwtBearerGrant({ idJagIssuers: trustedIdps })
  docsGrant = jwtBearerGrant({ idJagIssuers: trustedIdps })
  ;[crmAs, docsAs] = await Promise.all([
    startAuthorizationServer({ clients: [jwtBearerClient('relay-at-crm', CRM_SECRET)], extend: crmGrant.extend, dpop: {} }),
    startAuthorizationServer({ clients: [jwtBearerClient('relay-at-docs', DOCS_SECRET)], extend: docsGrant.extend }),
  ])
  idJags = idJagIssuer({ clientIds: { [crmAs.issuer]: 'relay-at-crm', [docsAs.issuer]: 'relay-at-docs' } })
  idp = await startAuthorizationServer({
    extend: idJags.extend,
    clients: [{
      client_id: 'relay-at-idp',
      client_secret: IDP_SECRET,
      grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE],
      response_types: ['code'],
      redirect_uris: [`http://127.0.0.1:${relayPort}/oauth/callback`],
    }],
  })
  trustedIdps.push(idp.issuer)
  ;[crm, docs] = await Promise.all([startMcpUpstream({ auth: { issuer: crmAs.issuer } }), startMcpUpstream({ auth: { issuer: docsAs.issuer } })])
  relay = await startEnterpriseRelay({})
})

afterAll(async () => {
  await relay?.close()
  await Promise.allSettled([crm, docs, crmAs, docsAs, idp].map((peer) => peer?.close()))
})

async function startEnterpriseRelay(env: Record<string, string>, port = relayPort): Promise<TestRelay> {
  return startRelay({
    servers: [
      { server_id: 'crm', description: 'CRM', mcp_url: crm.url, grant_type: 'enterprise', client_id: 'relay-at-crm', client_secret: CRM_SECRET },
      { server_id: 'docs', description: 'Docs', mcp_url: docs.url, grant_type: 'enterprise', client_id: 'relay-at-docs', client_secret: DOCS_SECRET },
    ],
    identityProvider: { issuer: idp.issuer, client_id: 'relay-at-idp', client_secret: IDP_SECRET, scope: 'openid offline_access' },
    env: { PORT: String(port), PUBLIC_BASE_URL: `http://127.0.0.1:${port}`, OAUTH_TRUSTED_HOSTS: [crmAs, docsAs].map((as) => new URL(as.url).host).join(','), LOG_LEVEL: 'debug', ...env },
    now: () => Date.now() + clockOffsetMs,
    logStream: logs.stream,
  })
}

async function whoami(target: TestRelay, userId: string, serverId: string) {
  const answer = await target.post('/tools/call-tool', { user_id: userId, tool_ref: `${serverId}::whoami`, input: {} })
  expect(answer.status).toBe(200)
  return answer.body
}

/** An ID token as the identity provider issues it to the relay's client (signed with the provider's key). */
async function idTokenFor(subject: string, claims: Record<string, unknown> = {}): Promise<string> {
  const key = await getSigningKey()
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: String(key.kid) })
    .setIssuer(idp.issuer)
    .setSubject(subject)
    .setAudience('relay-at-idp')
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(await importJWK(key, 'RS256'))
}

describe('enterprise-managed authorization', () => {
  it('takes one sign-in at the identity provider for every enterprise server, then exchanges it per server', async () => {
    const before = await relay.post('/tools/auth-status', { user_id: 'alice' })
    expect(before.body.servers.map((entry: { status: string }) => entry.status)).toEqual(['need_auth', 'need_auth'])
    const [crmEntry, docsEntry] = before.body.servers
    expect(crmEntry.login_url).toBe(docsEntry.login_url)

    const page = await signInThroughBrowser(crmEntry.login_url, 'alice')
    expect(page.status).toBe(200)
    expect(page.html).toContain('CRM, Docs')

    const exchangesBefore = idJags.exchanges.length
    const status = await relay.post('/tools/auth-status', { user_id: 'alice' })
    expect(status.body.servers).toEqual([
      expect.objectContaining({ server_id: 'crm', status: 'authorized', auth: 'enterprise' }),
      expect.objectContaining({ server_id: 'docs', status: 'authorized', auth: 'enterprise' }),
    ])
    // SEP-990: audience the server's authorization server, resource the server.
    expect(idJags.exchanges.slice(exchangesBefore).map(({ audience, resource, subject, ok }) => ({ audience, resource, subject, ok })).sort((a, b) => a.audience!.localeCompare(b.audience!))).toEqual(
      [
        { audience: crmAs.issuer, resource: crm.url, subject: 'alice', ok: true },
        { audience: docsAs.issuer, resource: docs.url, subject: 'alice', ok: true },
      ].sort((a, b) => a.audience.localeCompare(b.audience)),
    )
    expect(crmGrant.assertions.at(-1)).toMatchObject({ kind: 'id-jag', subject: 'alice', clientId: 'relay-at-crm', dpop: true, ok: true })
    expect(docsGrant.assertions.at(-1)).toMatchObject({ kind: 'id-jag', subject: 'alice', clientId: 'relay-at-docs', ok: true })

    const listed = await relay.post('/tools/list-tools', { user_id: 'alice' })
    expect(listed.body.auth_required).toEqual([])
    expect(listed.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toEqual(expect.arrayContaining(['crm::whoami', 'docs::whoami']))
    expect((await whoami(relay, 'alice', 'crm')).result.structuredContent.sub).toBe('alice')
    expect((await whoami(relay, 'alice', 'docs')).result.structuredContent.sub).toBe('alice')
    // The CRM's authorization server offers DPoP: its token is bound, and presented with proofs.
    expect((await relay.deps.tokens.get({ tenant: 'default', userId: 'alice', serverId: 'crm' }))?.tokenType).toBe('DPoP')
    expect(crm.counters.dpopRequests).toBeGreaterThan(0)
  })

  it('answers a refused exchange as that server\'s error, in the provider\'s words, never with a login link', async () => {
    const page = await signInThroughBrowser((await relay.post('/tools/auth-status', { user_id: 'bob' })).body.servers[0].login_url, 'bob')
    expect(page.status).toBe(200)
    idJags.refuse(({ audience }) => (audience === docsAs.issuer ? { error: 'access_denied', description: 'bob is not assigned to the Docs application' } : undefined))
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const status = await relay.post('/tools/auth-status', { user_id: 'bob' })
        expect(status.body.servers[0]).toMatchObject({ server_id: 'crm', status: 'authorized' })
        expect(status.body.servers[1]).toMatchObject({ server_id: 'docs', status: 'error' })
        expect(status.body.servers[1].message).toContain('bob is not assigned to the Docs application')
        expect(status.body.servers[1].message).toContain('access_denied')
        expect(status.body.servers[1].login_url).toBeUndefined()
      }
      const call = await whoami(relay, 'bob', 'docs')
      expect(call).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
      expect(call.message).toContain('bob is not assigned')
    } finally {
      idJags.refuse(undefined)
    }
    expect((await whoami(relay, 'bob', 'docs')).result.structuredContent.sub).toBe('bob')
  })

  it('renews an expired token with a new exchange, and an expiring identity with the provider\'s refresh token', async () => {
    const page = await signInThroughBrowser((await relay.post('/tools/auth-status', { user_id: 'carol', server_id: 'crm' })).body.servers[0].login_url, 'carol')
    expect(page.status).toBe(200)
    expect((await whoami(relay, 'carol', 'crm')).result.structuredContent.sub).toBe('carol')
    const owner = { tenant: 'default', userId: 'carol', serverId: 'crm' }
    const first = (await relay.deps.tokens.get(owner))!
    const refreshes = idp.refreshCount('carol')
    const exchanges = idJags.exchanges.filter((exchange) => exchange.subject === 'carol').length

    // Two minutes on: the server's token (60 s) and the ID token (60 s) both look expired.
    clockOffsetMs = 120_000
    try {
      expect((await whoami(relay, 'carol', 'crm')).result.structuredContent.sub).toBe('carol')
    } finally {
      clockOffsetMs = 0
    }
    expect(idp.refreshCount('carol')).toBe(refreshes + 1)
    expect(idJags.exchanges.filter((exchange) => exchange.subject === 'carol').length).toBe(exchanges + 1)
    expect((await relay.deps.tokens.get(owner))!.accessToken).not.toBe(first.accessToken)
  })

  it('exchanges once for concurrent first calls of a user (single-flight), and once per server', async () => {
    const page = await signInThroughBrowser((await relay.post('/tools/auth-status', { user_id: 'dave', server_id: 'docs' })).body.servers[0].login_url, 'dave')
    expect(page.status).toBe(200)
    const answers = await Promise.all(Array.from({ length: 6 }, (_, index) => whoami(relay, 'dave', index % 2 === 0 ? 'crm' : 'docs')))
    expect(answers.map((answer) => answer.result.structuredContent.sub)).toEqual(Array(6).fill('dave'))
    const daves = idJags.exchanges.filter((exchange) => exchange.subject === 'dave')
    expect(daves.map((exchange) => exchange.audience).sort()).toEqual([crmAs.issuer, docsAs.issuer].sort())
  })

  it('exchanges once across two replicas on one store, whichever of them the calls reach', async () => {
    const shared = { STORE_URL: REDIS_URL, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }
    const storeKeyPrefix = `ent${randomBytes(4).toString('hex')}`
    const replicas = await Promise.all([freePort(), freePort()].map(async (port) => startRelay({
      servers: [
        { server_id: 'crm', description: 'CRM', mcp_url: crm.url, grant_type: 'enterprise', client_id: 'relay-at-crm', client_secret: CRM_SECRET },
        { server_id: 'docs', description: 'Docs', mcp_url: docs.url, grant_type: 'enterprise', client_id: 'relay-at-docs', client_secret: DOCS_SECRET },
      ],
      identityProvider: { issuer: idp.issuer, client_id: 'relay-at-idp', client_secret: IDP_SECRET },
      env: { PORT: String(await port), OAUTH_TRUSTED_HOSTS: [crmAs, docsAs].map((as) => new URL(as.url).host).join(','), ...shared },
      storeKeyPrefix,
    })))
    try {
      expect((await replicas[0]!.post('/oauth/identity', { user_id: 'liam', id_token: await idTokenFor('liam') })).status).toBe(200)
      const answers = await Promise.all(Array.from({ length: 8 }, (_, index) => whoami(replicas[index % 2]!, 'liam', index % 4 < 2 ? 'crm' : 'docs')))
      expect(answers.map((answer) => answer.result.structuredContent.sub)).toEqual(Array(8).fill('liam'))
      expect(idJags.exchanges.filter((exchange) => exchange.subject === 'liam').map((exchange) => exchange.audience).sort()).toEqual([crmAs.issuer, docsAs.issuer].sort())
    } finally {
      await Promise.all(replicas.map((replica) => replica.close()))
    }
  })

  it('takes an application\'s ID token from POST /oauth/identity for every enterprise server', async () => {
    const answer = await relay.post('/oauth/identity', { user_id: 'erin', id_token: await idTokenFor('erin@example.com') })
    expect(answer.status).toBe(200)
    expect(answer.body).toEqual({ ok: true, expires_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) })
    expect(new Date(answer.body.expires_at).getTime()).toBeGreaterThan(Date.now() + 9 * 60_000)
    expect((await whoami(relay, 'erin', 'crm')).result.structuredContent.sub).toBe('erin@example.com')
    expect((await whoami(relay, 'erin', 'docs')).result.structuredContent.sub).toBe('erin@example.com')
  })

  it('replaces every enterprise token when the identity changes to another account, and keeps them for the same one', async () => {
    await relay.post('/oauth/identity', { user_id: 'frank', id_token: await idTokenFor('frank') })
    expect((await whoami(relay, 'frank', 'crm')).result.structuredContent.sub).toBe('frank')
    const owner = { tenant: 'default', userId: 'frank', serverId: 'crm' }
    const kept = (await relay.deps.tokens.get(owner))!.accessToken

    await relay.post('/oauth/identity', { user_id: 'frank', id_token: await idTokenFor('frank') })
    expect((await relay.deps.tokens.get(owner))!.accessToken).toBe(kept)

    // force_reauth: the provider's link again; signing in as another account switches every server.
    const forced = await relay.post('/tools/auth-status', { user_id: 'frank', force_reauth: true })
    expect(forced.body.servers.map((entry: { status: string }) => entry.status)).toEqual(['need_auth', 'need_auth'])
    expect(forced.body.servers[0].login_url).toBe(forced.body.servers[1].login_url)
    expect((await signInThroughBrowser(forced.body.servers[0].login_url, 'frank-admin')).status).toBe(200)
    expect(await relay.deps.tokens.get(owner)).toBeUndefined()
    expect((await whoami(relay, 'frank', 'crm')).result.structuredContent.sub).toBe('frank-admin')
    expect((await whoami(relay, 'frank', 'docs')).result.structuredContent.sub).toBe('frank-admin')
  })

  it('signs out at the provider on a reset of every server (RFC 7009), and keeps the identity on a reset of one', async () => {
    const page = await signInThroughBrowser((await relay.post('/tools/auth-status', { user_id: 'grace' })).body.servers[0].login_url, 'grace')
    expect(page.status).toBe(200)
    expect((await whoami(relay, 'grace', 'crm')).ok).toBe(true)

    const one = await relay.post('/oauth/reset', { user_id: 'grace', server_id: 'crm' })
    expect(one.body).toMatchObject({ deleted_server_ids: ['crm'] })
    expect(one.body.identity_provider).toBeUndefined()
    expect((await relay.post('/tools/auth-status', { user_id: 'grace', server_id: 'crm' })).body.servers[0]).toMatchObject({ status: 'authorized', auth: 'enterprise' })

    const revocations = idp.revocationRequests.length
    const all = await relay.post('/oauth/reset', { user_id: 'grace' })
    expect(all.body).toMatchObject({ deleted_server_ids: ['crm'], identity_provider: { revoked: true } })
    expect(idp.revocationRequests.slice(revocations)).toEqual([{ answered: 200 }])
    const after = await relay.post('/tools/auth-status', { user_id: 'grace' })
    expect(after.body.servers.map((entry: { status: string }) => entry.status)).toEqual(['need_auth', 'need_auth'])
  })

  it('holds a provider sign-in for its confirmation code with SIGN_IN_CONFIRMATION=code, counting a wrong code once per request', async () => {
    await relay.close()
    relay = await startEnterpriseRelay({ SIGN_IN_CONFIRMATION: 'code' })
    const status = await relay.post('/tools/auth-status', { user_id: 'heidi' })
    const page = await signInThroughBrowser(status.body.servers[0].login_url, 'heidi')
    expect(page.status).toBe(200)
    const code = /id="confirmation-code"[^>]*>([^<]+)</.exec(page.html)?.[1]
    expect(code).toMatch(/^[0-9A-Z]{5}-[0-9A-Z]{5}$/)

    const pending = await relay.post('/tools/auth-status', { user_id: 'heidi' })
    expect(pending.body.servers).toEqual([
      expect.objectContaining({ server_id: 'crm', status: 'need_auth', pending_confirmation: true }),
      expect.objectContaining({ server_id: 'docs', status: 'need_auth', pending_confirmation: true }),
    ])
    expect(pending.body.servers[0].login_url).toBeUndefined()

    const wrong = await relay.post('/tools/auth-status', { user_id: 'heidi', confirm_code: 'AAAAA-AAAAA' })
    expect(wrong.body.servers[0].message).toContain('4 tries left')
    expect(wrong.body.servers[1].message).toContain('4 tries left')

    const right = await relay.post('/tools/auth-status', { user_id: 'heidi', confirm_code: code })
    expect(right.body.servers).toEqual([
      expect.objectContaining({ server_id: 'crm', status: 'authorized', auth: 'enterprise' }),
      expect.objectContaining({ server_id: 'docs', status: 'authorized', auth: 'enterprise' }),
    ])
    expect((await whoami(relay, 'heidi', 'docs')).result.structuredContent.sub).toBe('heidi')
  })

  it('never sends an identity to a provider other than the one it was stored with (the configuration moved on)', async () => {
    const idToken = await idTokenFor('ken')
    // As a relay configured for another provider before would have stored it.
    await relay.deps.identities.put({ tenant: 'default', userId: 'ken' }, {
      idToken, refreshToken: 'rt-of-the-old-provider', expiresAt: Date.now() + 600_000, subject: 'ken',
      issuer: 'https://old-idp.example.com', clientId: 'relay-at-idp', obtainedAt: Date.now(),
    })
    const exchanges = idJags.exchanges.length
    const refreshes = idp.tokenRequests.filter((request) => request.grantType === 'refresh_token').length
    const status = await relay.post('/tools/auth-status', { user_id: 'ken', server_id: 'crm' })
    expect(status.body.servers[0]).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
    expect(idJags.exchanges.length).toBe(exchanges)
    expect(idp.tokenRequests.filter((request) => request.grantType === 'refresh_token').length).toBe(refreshes)
  })

  it('logs each step as an audit line naming tenant, user and server, and never a token, secret or key', async () => {
    const records = logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>)
    const events = new Set(records.map((record) => record.event).filter(Boolean))
    for (const event of ['sign_in.started', 'sign_in.completed', 'sign_in.confirmed', 'identity.stored', 'enterprise.ok', 'enterprise.refused', 'refresh.ok', 'reset', 'revocation']) {
      expect(events, event).toContain(event)
    }
    for (const record of records.filter((line) => line.event !== undefined)) {
      expect(Object.keys(record)).toEqual(expect.arrayContaining(['event', 'tenant', 'userId', 'serverId']))
    }
    expect(records.find((record) => record.event === 'sign_in.completed')).toMatchObject({ serverId: '@identity_provider' })

    const text = logs.lines.join('\n')
    const secrets = [...idp.issuedSecrets, ...crmAs.issuedSecrets, ...docsAs.issuedSecrets].map((issued) => issued.value)
    // ID tokens, their refresh tokens, the ID-JAGs (the exchange's access_token) and the servers' tokens.
    expect(idp.issuedSecrets.filter((issued) => issued.kind === 'id_token').length).toBeGreaterThan(3)
    expect(crmAs.issuedSecrets.filter((issued) => issued.kind === 'access_token').length).toBeGreaterThan(3)
    for (const secret of [...secrets, IDP_SECRET, CRM_SECRET, DOCS_SECRET]) expect(text).not.toContain(secret)
    const bound = await relay.deps.tokens.get({ tenant: 'default', userId: 'heidi', serverId: 'crm' })
    expect(bound?.dpopKey?.jwk.d).toBeTruthy()
    expect(text).not.toContain(bound!.dpopKey!.jwk.d)
  })
})
