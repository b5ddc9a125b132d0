import { afterEach, describe, expect, it } from 'vitest'
import { protectedMcpEndpoint, startScriptedServer, type ScriptedServer } from '../peers/scripted-server.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { pressContinue } from '../peers/browser.ts'

// MCP 2025-03-26 "Fallbacks for Servers without Metadata Discovery" is for servers that have no
// protected-resource metadata, not for ones whose metadata failed to load: those must not be sent
// to /authorize at their origin (nor have that guess cached), and work once the metadata is back.

let peer: ScriptedServer | undefined
let relay: TestRelay | undefined

afterEach(async () => {
  await relay?.close()
  await peer?.close()
})

async function start(challengeNamesMetadata: boolean) {
  peer = await startScriptedServer()
  const prmUrl = `${peer.origin}/.well-known/oauth-protected-resource/mcp`
  peer.route('/mcp', protectedMcpEndpoint(challengeNamesMetadata ? prmUrl : undefined))
  // The 2025-03-26 defaults at the origin, which only a server without metadata may be sent to.
  peer.route('/register', { status: 201, json: { client_id: 'origin-client', redirect_uris: [] } }, 'POST')
  // A 2025-11-25 authorization server at /as, for when the metadata is there.
  peer.route('/.well-known/oauth-authorization-server/as', {
    json: {
      issuer: `${peer.origin}/as`,
      authorization_endpoint: `${peer.origin}/as/authorize`,
      token_endpoint: `${peer.origin}/as/token`,
      registration_endpoint: `${peer.origin}/as/register`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
    },
  })
  peer.route('/as/register', { status: 201, json: { client_id: 'as-client', redirect_uris: [] } }, 'POST')
  relay = await startRelay({ servers: [{ server_id: 'docs', mcp_url: `${peer.origin}/mcp` }] })
  return { peer, relay, prmUrl }
}

const prmDocument = (peer: ScriptedServer) => ({ json: { resource: `${peer.origin}/mcp`, authorization_servers: [`${peer.origin}/as`] } })

async function authorizationEndpointOf(relay: TestRelay): Promise<string> {
  const listed = await relay.post('/tools/list-tools', { user_id: 'wendy' })
  expect(listed.body.errors).toEqual([])
  const start = await pressContinue(listed.body.auth_required[0].login_url)
  const location = new URL(start.headers.get('location')!)
  return location.origin + location.pathname
}

describe('the 2025-03-26 fallback', () => {
  it('is taken for a server with no protected-resource metadata at all', async () => {
    const { peer, relay } = await start(false)
    expect(await authorizationEndpointOf(relay)).toBe(`${peer.origin}/authorize`)
  })

  it.each([
    { name: 'named in the challenge and missing (404)', challenge: true, status: 404 },
    { name: 'named in the challenge and failing (500)', challenge: true, status: 500 },
    { name: 'at the well-known URL and failing (503)', challenge: false, status: 503 },
    { name: 'at the well-known URL and rate limited (429)', challenge: false, status: 429 },
  ])('is not taken when the metadata is $name; it is found once it is back', async ({ challenge, status }) => {
    const { peer, relay, prmUrl } = await start(challenge)
    peer.route(new URL(prmUrl).pathname, { status, json: { error: 'unavailable' } })
    const listed = await relay.post('/tools/list-tools', { user_id: 'wendy' })
    expect(listed.body.auth_required).toEqual([])
    expect(listed.body.errors).toEqual([{ server_id: 'docs', error: expect.stringMatching(/protected-resource metadata at .* could not be read/) }])
    // Nothing was tried at the origin's 2025-03-26 defaults.
    expect(peer.requests.filter((request) => /^\/(register|authorize|token)|oauth-authorization-server$|openid-configuration$/.test(request.path))).toEqual([])

    peer.route(new URL(prmUrl).pathname, prmDocument(peer))
    expect(await authorizationEndpointOf(relay)).toBe(`${peer.origin}/as/authorize`)
  })
})
