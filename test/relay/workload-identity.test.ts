// Workload identity federation (grant_type "workload_identity") through the relay's routes,
// against real peers: oidc-provider redeeming a workload's JWT with the JWT bearer grant (RFC
// 7523, DPoP-bound tokens) and an SDK MCP server that says whose token it got. The JWT sits in a
// file, as a Kubernetes projected service account token does, and is rotated under the relay.
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { JWT_BEARER, jwtBearerGrant, type JwtBearerGrant } from '../peers/extension-grants.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const WORKLOAD_ISSUER = 'https://kubernetes.default.svc.cluster.local'
const workloadKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })

let as: AuthorizationServer
let grant: JwtBearerGrant
let upstream: McpUpstream
let relay: TestRelay
let directory: string
let tokenFile: string
/** How far the relay's clock runs ahead of the real one: moved forward to make the token look expired. */
let clockOffsetMs = 0

/** A projected service account token as the platform writes it: its JWT, then a newline. */
async function writeAssertion(path: string, options: { jti: string; subject?: string; audience?: string; expiresIn?: string }): Promise<void> {
  const jwt = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(WORKLOAD_ISSUER)
    .setSubject(options.subject ?? 'system:serviceaccount:agents:relay')
    .setAudience(options.audience ?? as.issuer)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? '10m')
    .setJti(options.jti)
    .sign(workloadKey.privateKey)
  writeFileSync(path, `${jwt}\n`)
}

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), 'relay-workload-'))
  tokenFile = join(directory, 'token')
  grant = jwtBearerGrant({ workloadKeys: [{ issuer: WORKLOAD_ISSUER, key: workloadKey.publicKey }] })
  as = await startAuthorizationServer({
    extend: grant.extend,
    dpop: {},
    clients: [{ client_id: 'relay-workload', token_endpoint_auth_method: 'none', grant_types: [JWT_BEARER], response_types: [], redirect_uris: [] }],
  })
  upstream = await startMcpUpstream({ auth: { issuer: as.issuer, scopesSupported: ['mcp:read'] } })
  await writeAssertion(tokenFile, { jti: 'first' })
  relay = await startRelay({
    servers: [
      { server_id: 'reports', description: 'Reports', mcp_url: upstream.url, grant_type: 'workload_identity', assertion_file: tokenFile, client_id: 'relay-workload' },
      { server_id: 'broken', description: 'Reports (no token file)', mcp_url: upstream.url, grant_type: 'workload_identity', assertion_file: join(directory, 'missing') },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    now: () => Date.now() + clockOffsetMs,
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.allSettled([upstream?.close(), as?.close()])
  rmSync(directory, { recursive: true, force: true })
})

async function whoami(userId: string, serverId = 'reports') {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: `${serverId}::whoami`, input: {} })
  expect(answer.status).toBe(200)
  return answer.body
}

describe('a workload identity', () => {
  it('gets one token for everyone with the JWT in assertion_file: a JWT bearer grant, no secret, DPoP-bound', async () => {
    const [alice, bob] = await Promise.all([whoami('alice'), whoami('bob')])
    expect(alice.result.structuredContent).toMatchObject({ sub: 'system:serviceaccount:agents:relay', client_id: 'relay-workload' })
    expect(bob.result.structuredContent.sub).toBe('system:serviceaccount:agents:relay')
    expect(grant.assertions).toEqual([expect.objectContaining({ kind: 'workload', jti: 'first', clientId: 'relay-workload', dpop: true, ok: true })])
    expect(as.tokenRequests.map((request) => request.grantType)).toEqual([JWT_BEARER])

    const status = await relay.post('/tools/auth-status', { user_id: 'carol', server_id: 'reports' })
    expect(status.body.servers[0]).toMatchObject({ status: 'authorized', auth: 'service_account' })
    expect((await relay.deps.oauth.serviceTokens.get({ tenant: '*', userId: '*', serverId: 'reports' }))?.tokenType).toBe('DPoP')
  })

  it('reads the file anew for each token request: a rotated assertion is picked up', async () => {
    await writeAssertion(tokenFile, { jti: 'rotated' })
    // The token is still good: no new request, whatever the file holds now.
    expect((await whoami('alice')).ok).toBe(true)
    expect(grant.assertions.map((record) => record.jti)).toEqual(['first'])

    clockOffsetMs = 120_000
    try {
      expect((await whoami('alice')).result.structuredContent.sub).toBe('system:serviceaccount:agents:relay')
    } finally {
      clockOffsetMs = 0
    }
    expect(grant.assertions.map((record) => record.jti)).toEqual(['first', 'rotated'])
  })

  it("reports a refused assertion as the server's error, in the server's words, and tries no other grant", async () => {
    await writeAssertion(tokenFile, { jti: `wrong-audience-${randomUUID()}`, audience: 'https://elsewhere.example' })
    const requests = as.tokenRequests.length
    // Past the expiry of the token the previous test obtained two minutes ahead.
    clockOffsetMs = 600_000
    try {
      const status = await relay.post('/tools/auth-status', { user_id: 'dave', server_id: 'reports' })
      expect(status.body.servers[0]).toMatchObject({ status: 'error' })
      expect(status.body.servers[0].message).toContain('invalid_grant')
      expect(status.body.servers[0].message).toContain('the assertion was refused')
      expect(status.body.servers[0].login_url).toBeUndefined()
    } finally {
      clockOffsetMs = 0
    }
    // One request, with this grant: no retry and no other grant kind.
    expect(as.tokenRequests.slice(requests).map((request) => [request.grantType, request.error])).toEqual([[JWT_BEARER, 'invalid_grant']])
    await writeAssertion(tokenFile, { jti: 'good-again' })
  })

  it('names an assertion file it cannot read', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'erin', server_id: 'broken' })
    expect(status.body.servers[0]).toMatchObject({ status: 'error' })
    expect(status.body.servers[0].message).toContain(`the assertion file ${join(directory, 'missing')} cannot be read (ENOENT)`)
  })

  it('leaves the shared token alone when a user resets', async () => {
    expect((await whoami('frank')).ok).toBe(true)
    const before = await relay.deps.oauth.serviceTokens.get({ tenant: '*', userId: '*', serverId: 'reports' })
    const reset = await relay.post('/oauth/reset', { user_id: 'frank' })
    expect(reset.body.deleted_server_ids).toEqual([])
    expect(await relay.deps.oauth.serviceTokens.get({ tenant: '*', userId: '*', serverId: 'reports' })).toEqual(before)
  })
})
