// DNS rebinding through the relay's own routes (DESIGN.md §6): a name that an upstream's
// metadata names resolves to a public address whenever the relay checks it, and to 127.0.0.1
// when the relay connects. The relay resolves through a resolver the test controls
// (test/support/made-up-names.ts); the name's port is a loopback trap that counts connections,
// and a tripwire keeps every socket of this process on loopback. The refusal must read as the
// server's error today (error / UPSTREAM_ERROR, naming the host), with no secret in it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { protectedMcpEndpoint, startScriptedServer, type ScriptedServer } from '../peers/scripted-server.ts'
import { allowLoopbackOnly, createResolver, PUBLIC_ADDRESS } from '../support/made-up-names.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { startSilentPort } from './fault-upstream.ts'

const tripwire = allowLoopbackOnly()
const resolver = createResolver({
  'rebind.example': { checked: PUBLIC_ADDRESS, connecting: '127.0.0.1' },
  'tokens.example': { checked: PUBLIC_ADDRESS, connecting: '127.0.0.1' },
})
let peer: ScriptedServer
let trap: Awaited<ReturnType<typeof startSilentPort>> & { port: string }
let relay: TestRelay

const REFRESH_TOKEN = 'rt-rebinding-secret-0123456789'
const ACCESS_TOKEN = 'at-rebinding-secret-0123456789'

beforeAll(async () => {
  peer = await startScriptedServer()
  const silent = await startSilentPort()
  trap = { ...silent, port: new URL(silent.origin).port }
  // "metadata": its protected-resource metadata names an authorization server at the rebinding name.
  peer.route('/mcp-metadata', protectedMcpEndpoint(`${peer.origin}/prm-metadata`))
  peer.route('/prm-metadata', { json: { resource: `${peer.origin}/mcp-metadata`, authorization_servers: [`https://rebind.example:${trap.port}`] } })
  // "tokens": discovery is fine (all on the trusted peer) but the token endpoint is at the rebinding name.
  peer.route('/mcp-tokens', protectedMcpEndpoint(`${peer.origin}/.well-known/oauth-protected-resource/mcp-tokens`))
  peer.route('/.well-known/oauth-protected-resource/mcp-tokens', { json: { resource: `${peer.origin}/mcp-tokens`, authorization_servers: [`${peer.origin}/as`] } })
  peer.route('/.well-known/oauth-authorization-server/as', {
    json: {
      issuer: `${peer.origin}/as`,
      authorization_endpoint: `${peer.origin}/as/authorize`,
      token_endpoint: `https://tokens.example:${trap.port}/token`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none'],
    },
  })
  relay = await startRelay({
    servers: [
      { server_id: 'metadata', mcp_url: `${peer.origin}/mcp-metadata` },
      { server_id: 'tokens', mcp_url: `${peer.origin}/mcp-tokens`, client_id: 'relay-client' },
    ],
    env: { UPSTREAM_TIMEOUT_SECONDS: '5' },
    lookup: resolver.lookup,
  })
})

afterAll(async () => {
  tripwire.stop()
  await relay?.close()
  await Promise.all([peer?.close(), trap?.close()])
})

describe('a name that rebinds to loopback between check and connect', () => {
  it('in metadata (the authorization server): the server is in error on every route, and nothing reaches the name', async () => {
    const refusal = `https://rebind.example:${trap.port} resolved to 127.0.0.1, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS`
    const status = await relay.post('/tools/auth-status', { user_id: 'victim', server_id: 'metadata' })
    expect(status.body.servers[0]).toMatchObject({ server_id: 'metadata', status: 'error', message: `Sign-in to metadata is unavailable: ${refusal}` })
    expect(status.body.servers[0].login_url).toBeUndefined()
    const call = await relay.post('/tools/call-tool', { user_id: 'victim', tool_ref: 'metadata::echo', input: {} })
    expect(call.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', message: `Sign-in to metadata is unavailable: ${refusal}` })
    const list = await relay.post('/tools/list-tools', { user_id: 'victim', server_id: 'metadata' })
    expect(list.body.errors).toEqual([{ server_id: 'metadata', error: `Sign-in to metadata is unavailable: ${refusal}` }])
    // Every check saw the public address, every connection 127.0.0.1, and was refused.
    const questions = resolver.asked.filter((question) => question.hostname === 'rebind.example')
    expect(questions.some((question) => !question.connecting && question.address === PUBLIC_ADDRESS)).toBe(true)
    expect(questions.some((question) => question.connecting && question.address === '127.0.0.1')).toBe(true)
    expect(trap.accepted()).toBe(0)
  })

  it('at the token endpoint (a refresh): the call fails for now with the host named, the tokens are kept, nothing reaches the name', async () => {
    const owner = { tenant: 'default', userId: 'alice', serverId: 'tokens' }
    const now = Date.now()
    await relay.deps.tokens.put(owner, {
      accessToken: ACCESS_TOKEN,
      refreshToken: REFRESH_TOKEN,
      expiresAt: now - 1000,
      scope: undefined,
      issuer: `${peer.origin}/as`,
      clientId: 'relay-client',
      resource: `${peer.origin}/mcp-tokens`,
      obtainedAt: now - 3_600_000,
    })
    const call = await relay.post('/tools/call-tool', { user_id: 'alice', tool_ref: 'tokens::echo', input: {} })
    expect(call.status).toBe(200)
    expect(call.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(call.body.message).toBe(
      `Token refresh failed: https://tokens.example:${trap.port} resolved to 127.0.0.1, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS. Your sign-in is kept; try again shortly.`,
    )
    expect(JSON.stringify(call.body)).not.toContain(REFRESH_TOKEN)
    expect(JSON.stringify(call.body)).not.toContain(ACCESS_TOKEN)
    expect(await relay.deps.tokens.get(owner)).toMatchObject({ refreshToken: REFRESH_TOKEN })
    const questions = resolver.asked.filter((question) => question.hostname === 'tokens.example')
    // Checked (discovery's check of token_endpoint, the OAuth fetch's own) as public; connected as loopback.
    expect(questions.filter((question) => !question.connecting).every((question) => question.address === PUBLIC_ADDRESS)).toBe(true)
    expect(questions.filter((question) => question.connecting).map((question) => question.address)).toEqual(['127.0.0.1'])
    expect(trap.accepted()).toBe(0)
  })

  it('no socket of this process went anywhere but loopback', () => {
    expect(tripwire.blocked).toEqual([])
  })
})
