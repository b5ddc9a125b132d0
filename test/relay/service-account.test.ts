// Service accounts (grant_type client_credentials, DESIGN.md §3) through the relay's HTTP routes,
// against real peers: oidc-provider with the client credentials grant (client_secret_basic,
// client_secret_post, private_key_jwt with EC and RSA keys) and an SDK MCP server that checks the
// JWT's audience and says whose token it got.
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer, type ClientMetadata } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { captureLogLines } from '../battery/harness.ts'
import { claimRedisDatabase, type IsolatedStore } from '../support/isolated-stores.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'

const SECRET = `svc-secret-${randomBytes(12).toString('hex')}`
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })

const pem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }) as string
const jwk = (key: KeyObject) => key.export({ format: 'jwk' })

const serviceClient = (clientId: string, method: ClientMetadata['token_endpoint_auth_method'], extra: Partial<ClientMetadata> = {}): ClientMetadata => ({
  client_id: clientId,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: method,
  ...extra,
})

let as: AuthorizationServer
let upstream: McpUpstream
const relays: TestRelay[] = []

beforeAll(async () => {
  as = await startAuthorizationServer({
    accessTokenTtlSeconds: 3,
    clients: [
      serviceClient('svc-basic', 'client_secret_basic', { client_secret: SECRET }),
      serviceClient('svc-post', 'client_secret_post', { client_secret: SECRET }),
      serviceClient('svc-ec', 'private_key_jwt', { jwks: { keys: [{ ...jwk(ec.publicKey), kid: 'ec' }] } as never }),
      serviceClient('svc-rsa', 'private_key_jwt', { jwks: { keys: [{ ...jwk(rsa.publicKey), kid: 'rsa' }] } as never }),
    ],
  })
  upstream = await startMcpUpstream({ auth: { issuer: as.issuer, scopesSupported: ['mcp:read'] } })
})

afterAll(async () => {
  await Promise.allSettled(relays.map((relay) => relay.close()))
  await Promise.allSettled([upstream?.close(), as?.close()])
})

const logs = captureLogLines()

async function relayWith(entry: Record<string, unknown>, options: { env?: Record<string, string>; storeKeyPrefix?: string } = {}): Promise<TestRelay> {
  const relay = await startRelay({
    logStream: logs.stream,
    servers: [{ server_id: 'svc', description: 'Reports', mcp_url: upstream.url, grant_type: 'client_credentials', ...entry }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, LOG_LEVEL: 'info', ...options.env },
    ...(options.storeKeyPrefix ? { storeKeyPrefix: options.storeKeyPrefix } : {}),
  })
  relays.push(relay)
  return relay
}

const tokenRequestsOf = (clientId: string) =>
  as.tokenRequests.filter((request) => request.grantType === 'client_credentials' && request.clientId === clientId)

async function whoami(relay: TestRelay, userId: string, apiKey?: string) {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'svc::whoami', input: {} }, apiKey ? { apiKey } : {})
  expect(answer.status).toBe(200)
  return answer.body
}

describe('a service account', () => {
  it.each([
    ['client_secret_basic (the default)', 'svc-basic', { client_id: 'svc-basic', client_secret: SECRET }],
    ['client_secret_post', 'svc-post', { client_id: 'svc-post', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_post' }],
    ['private_key_jwt with an EC key (ES256 from the key)', 'svc-ec', { client_id: 'svc-ec', client_private_key: pem(ec.privateKey) }],
    ['private_key_jwt with an RSA key (RS256 from the key)', 'svc-rsa', { client_id: 'svc-rsa', client_private_key: pem(rsa.privateKey), token_endpoint_auth_method: 'private_key_jwt' }],
  ])('authorizes every tenant and user with one token: %s', async (_name, clientId, entry) => {
    const relay = await relayWith(entry)
    const before = tokenRequestsOf(clientId).length

    const status = await relay.post('/tools/auth-status', { user_id: 'ada' })
    expect(status.body).toMatchObject({ all_authorized: true, authorized_server_ids: ['svc'], need_auth_server_ids: [] })
    expect(status.body.servers[0]).toMatchObject({ server_id: 'svc', status: 'authorized', auth: 'service_account' })
    expect(status.body.servers[0]).not.toHaveProperty('login_url')

    const listed = await relay.post('/tools/list-tools', { user_id: 'bob' })
    expect(listed.body.auth_required).toEqual([])
    expect(listed.body.tools.map((tool: { tool_ref: string }) => tool.tool_ref)).toContain('svc::whoami')

    // Two users of two tenants act as the same service identity, with the resource as audience.
    const [ada, grace] = await Promise.all([whoami(relay, 'ada'), whoami(relay, 'grace', OTHER_TENANT_KEY)])
    for (const answer of [ada, grace]) {
      expect(answer.ok).toBe(true)
      expect(answer.result.structuredContent).toMatchObject({ client_id: clientId, aud: upstream.url })
    }
    const requests = tokenRequestsOf(clientId).slice(before)
    expect(requests).toHaveLength(1)
    expect(requests[0]).toMatchObject({ ok: true, resource: upstream.url })
  })

  it('reads its key from client_private_key_file, signing with client_signing_alg', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-svc-key-'))
    const file = join(dir, 'svc.pem')
    writeFileSync(file, pem(rsa.privateKey), { mode: 0o600 })
    const relay = await relayWith({ client_id: 'svc-rsa', client_private_key_file: file, client_signing_alg: 'PS256' })
    expect((await whoami(relay, 'ada')).result.structuredContent).toMatchObject({ client_id: 'svc-rsa' })
  })

  it('answers a refused secret as the server\'s error, with no login link and no secret', async () => {
    const wrong = `wrong-${randomBytes(8).toString('hex')}`
    const relay = await relayWith({ client_id: 'svc-basic', client_secret: wrong })

    const status = await relay.post('/tools/auth-status', { user_id: 'ada', force_reauth: true })
    expect(status.body.all_authorized).toBe(false)
    expect(status.body.servers[0]).toMatchObject({ status: 'error' })
    expect(status.body.servers[0].message).toMatch(/service account of svc could not get a token: the authorization server refused the client.*check client_id/)
    expect(status.body.errors).toEqual([{ server_id: 'svc', error: status.body.servers[0].message }])

    const listed = await relay.post('/tools/list-tools', { user_id: 'ada' })
    expect(listed.body).toMatchObject({ tools: [], auth_required: [], errors: [{ server_id: 'svc' }] })
    const called = await whoami(relay, 'ada')
    expect(called).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(called.message).toMatch(/refused the client/)
    const everything = JSON.stringify([status.body, listed.body, called, logs.lines])
    expect(everything).not.toContain(wrong)
    // Audit: one service_account.refused line per attempt, naming the server and no secret.
    const refused = logs.lines.map((line) => JSON.parse(line)).filter((record) => record.event === 'service_account.refused')
    expect(refused.length).toBeGreaterThanOrEqual(1)
    expect(refused[0]).toMatchObject({ tenant: '*', userId: '*', serverId: 'svc', oauthError: 'invalid_client' })
    expect(everything).not.toContain('"login_url"')
    expect(everything).not.toContain('/oauth/start/')
  })

  it('gets a new token when the stored one is close to expiry, and once when the server answers 401', async () => {
    const relay = await relayWith({ client_id: 'svc-post', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_post' })
    const owner = { tenant: '*', userId: '*', serverId: 'svc' }
    const before = tokenRequestsOf('svc-post').length
    expect((await whoami(relay, 'ada')).ok).toBe(true)
    const first = (await relay.deps.oauth.serviceTokens.get(owner))!

    // Within the skew of its expiry (a quarter of 3 s): renewed before the call.
    await relay.deps.oauth.serviceTokens.put(owner, { ...first, expiresAt: Date.now() + 100, obtainedAt: Date.now() - 2900 })
    expect((await whoami(relay, 'ada')).ok).toBe(true)
    const second = (await relay.deps.oauth.serviceTokens.get(owner))!
    expect(second.accessToken).not.toBe(first.accessToken)

    // A token the server refuses (401): one new token, and the call is retried with it.
    await relay.deps.oauth.serviceTokens.put(owner, { ...second, accessToken: 'not-a-token' })
    const refusedBefore = upstream.counters.unauthorized
    expect((await whoami(relay, 'ada')).ok).toBe(true)
    expect(upstream.counters.unauthorized).toBe(refusedBefore + 1)
    expect(tokenRequestsOf('svc-post').length - before).toBe(3)
  })

  it('is left alone by a user\'s reset', async () => {
    const relay = await relayWith({ client_id: 'svc-basic', client_secret: SECRET })
    expect((await whoami(relay, 'ada')).ok).toBe(true)
    const owner = { tenant: '*', userId: '*', serverId: 'svc' }
    const stored = await relay.deps.oauth.serviceTokens.get(owner)
    const reset = await relay.post('/oauth/reset', { user_id: 'ada' })
    expect(reset.status).toBe(200)
    expect(reset.body.deleted_server_ids).toEqual([])
    expect(await relay.deps.oauth.serviceTokens.get(owner)).toEqual(stored)
  })

  describe('on a shared store', () => {
    let store: IsolatedStore
    beforeAll(async () => {
      store = await claimRedisDatabase()
    })
    afterAll(async () => {
      await store?.release()
    })

    it('two replicas calling at once ask the authorization server for one token', async () => {
      const env = { STORE_URL: store.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }
      const storeKeyPrefix = `svc${randomBytes(4).toString('hex')}`
      const entry = { client_id: 'svc-ec', client_private_key: pem(ec.privateKey) }
      const a = await relayWith(entry, { env, storeKeyPrefix })
      const b = await relayWith(entry, { env, storeKeyPrefix })
      const before = tokenRequestsOf('svc-ec').length
      const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => whoami(i % 2 ? a : b, `user-${i}`)))
      expect(answers.every((answer) => answer.ok)).toBe(true)
      expect(tokenRequestsOf('svc-ec').length - before).toBe(1)
    })
  })
})
