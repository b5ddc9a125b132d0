// POST /oauth/identity (DESIGN.md §4): an application hands the relay a user's ID token at the
// identity provider. The relay checks iss (as a string), aud (its client there) and exp, and
// refuses anything else with INVALID_INPUT naming id_token, never echoing the token.
import { generateKeyPairSync } from 'node:crypto'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRelay, type TestRelay } from '../support/relay.ts'

const ISSUER = 'https://login.example.com'
const CLIENT_ID = 'mcp-relay'
const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey

let relay: TestRelay
let withoutProvider: TestRelay

beforeAll(async () => {
  relay = await startRelay({
    servers: [{ server_id: 'crm', mcp_url: 'https://crm.example.com/mcp', grant_type: 'enterprise', client_id: 'relay-at-crm' }],
    identityProvider: { issuer: ISSUER, client_id: CLIENT_ID },
  })
  withoutProvider = await startRelay({ servers: [{ server_id: 'docs', mcp_url: 'https://docs.example.com/mcp' }] })
})

afterAll(async () => {
  await Promise.allSettled([relay?.close(), withoutProvider?.close()])
})

function idToken(claims: Record<string, unknown> = {}, options: { expiresAt?: number | null } = {}): Promise<string> {
  const jwt = new SignJWT({ iss: ISSUER, aud: CLIENT_ID, sub: 'alice@example.com', ...claims }).setProtectedHeader({ alg: 'ES256' }).setIssuedAt()
  if (options.expiresAt !== null) jwt.setExpirationTime(options.expiresAt ?? Math.floor(Date.now() / 1000) + 3600)
  return jwt.sign(key)
}

const unsigned = (claims: Record<string, unknown>) =>
  `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.e30`

describe('POST /oauth/identity', () => {
  it('keeps a fitting ID token and answers when it expires', async () => {
    const expiresAt = Math.floor(Date.now() / 1000) + 1800
    const token = await idToken({}, { expiresAt })
    const answer = await relay.post('/oauth/identity', { user_id: 'alice', id_token: token })
    expect(answer).toEqual({ status: 200, body: { ok: true, expires_at: new Date(expiresAt * 1000).toISOString() } })
    expect(await relay.deps.identities.get({ tenant: 'default', userId: 'alice' })).toMatchObject({ idToken: token, subject: 'alice@example.com' })
    // Another tenant's user of the same id has no identity.
    expect(await relay.deps.identities.get({ tenant: 'other', userId: 'alice' })).toBeUndefined()
  })

  it('takes an audience list that names the relay\'s client', async () => {
    const answer = await relay.post('/oauth/identity', { user_id: 'bob', id_token: await idToken({ aud: ['portal', CLIENT_ID] }) })
    expect(answer.status).toBe(200)
  })

  it.each([
    ['no user_id', async () => ({ id_token: await idToken() }), 'user_id: is required'],
    ['no id_token', async () => ({ user_id: 'carol' }), 'id_token: is required'],
    ['an id_token that is not a string', async () => ({ user_id: 'carol', id_token: 42 }), 'id_token: must be a string'],
    ['an empty id_token', async () => ({ user_id: 'carol', id_token: ' ' }), 'id_token: must not be empty'],
    ['an id_token that is no JWT', async () => ({ user_id: 'carol', id_token: 'not-a-jwt' }), 'id_token: must be a signed JWT'],
    ['an unsigned id_token (alg none)', async () => ({ user_id: 'carol', id_token: unsigned({ iss: ISSUER, aud: CLIENT_ID, sub: 'carol', exp: Math.floor(Date.now() / 1000) + 600 }) }), 'id_token: must be a signed JWT'],
    ['another issuer', async () => ({ user_id: 'carol', id_token: await idToken({ iss: 'https://evil.example.com' }) }), 'id_token: its issuer (iss) is not the configured identity provider'],
    ['the issuer with a trailing slash (compared as a string)', async () => ({ user_id: 'carol', id_token: await idToken({ iss: `${ISSUER}/` }) }), 'id_token: its issuer (iss)'],
    ['another audience', async () => ({ user_id: 'carol', id_token: await idToken({ aud: 'portal' }) }), `id_token: it was not issued to the relay's client ${CLIENT_ID} (aud)`],
    ['an expired token', async () => ({ user_id: 'carol', id_token: await idToken({}, { expiresAt: Math.floor(Date.now() / 1000) - 5 }) }), 'id_token: it has expired (exp)'],
    ['a token without exp', async () => ({ user_id: 'carol', id_token: await idToken({}, { expiresAt: null }) }), 'id_token: it has no expiry (exp)'],
    ['a token without sub', async () => ({ user_id: 'carol', id_token: await idToken({ sub: undefined }) }), 'id_token: it names no subject (sub)'],
  ])('refuses %s with INVALID_INPUT naming the field, echoing nothing', async (_case, body, message) => {
    const request: Record<string, unknown> = await body()
    const answer = await relay.post('/oauth/identity', request)
    expect(answer.status).toBe(400)
    expect(answer.body.error.code).toBe('INVALID_INPUT')
    expect(answer.body.error.message).toContain(message)
    const sent = request.id_token
    if (typeof sent === 'string' && sent.includes('.')) expect(JSON.stringify(answer.body)).not.toContain(sent.split('.')[1])
    expect(await relay.deps.identities.get({ tenant: 'default', userId: 'carol' })).toBeUndefined()
  })

  it('needs the API key', async () => {
    const answer = await relay.post('/oauth/identity', { user_id: 'dave', id_token: await idToken() }, { apiKey: null })
    expect(answer.status).toBe(401)
    expect(answer.body.error.code).toBe('UNAUTHORIZED')
  })

  it('answers 404 when no identity provider is configured', async () => {
    const answer = await withoutProvider.post('/oauth/identity', { user_id: 'erin', id_token: await idToken() })
    expect(answer.status).toBe(404)
    expect(answer.body.error).toEqual({ code: 'NOT_FOUND', message: 'no identity_provider is configured, so the relay takes no identities' })
  })
})
