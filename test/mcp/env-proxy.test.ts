// DESIGN.md §6: outbound requests honour the environment's proxy (HTTPS_PROXY, NO_PROXY through
// NODE_USE_ENV_PROXY), and an https target is always reached through CONNECT with TLS end to end,
// never as plain HTTP to the proxy, whatever the host form. The relay runs as operators run it (a
// process configured by its environment, trusting the peer's certificate through
// NODE_EXTRA_CA_CERTS); a recording proxy on loopback tunnels every CONNECT to one https peer,
// which plays the MCP servers and their authorization servers at a made-up name, a public IPv4
// literal and a public IPv6 literal (test/peers/self-signed.ts).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { startRecordingProxy, type RecordingProxy } from '../peers/recording-proxy.ts'
import { protectedMcpEndpoint, startScriptedServer, type ScriptedServer } from '../peers/scripted-server.ts'
import { CERTIFIED, SELF_SIGNED, SELF_SIGNED_CERT_PATH } from '../peers/self-signed.ts'
import { freePort } from '../support/free-port.ts'
import { startRelayProcess, type RelayProcess } from '../support/relay-process.ts'

const NAME = `https://${CERTIFIED.name}`
const IPV4 = `https://${CERTIFIED.ipv4}`
const IPV6 = `https://[${CERTIFIED.ipv6}]`

let peer: ScriptedServer
let proxy: RecordingProxy
let relay: RelayProcess
let relayPort: number

/** An MCP server at `${NAME}/${id}/mcp` whose authorization server is `${issuerOrigin}/${id}`. */
function scriptServer(id: string, issuerOrigin: string, extra: Record<string, unknown> = {}) {
  const issuer = `${issuerOrigin}/${id}`
  peer.route(`/${id}/mcp`, protectedMcpEndpoint(`${NAME}/.well-known/oauth-protected-resource/${id}/mcp`))
  peer.route(`/.well-known/oauth-protected-resource/${id}/mcp`, { json: { resource: `${NAME}/${id}/mcp`, authorization_servers: [issuer] } })
  peer.route(`/.well-known/oauth-authorization-server/${id}`, {
    json: {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      registration_endpoint: `${issuer}/register`,
      response_types_supported: ['code'],
      grant_types_supported: ['authorization_code', 'refresh_token', 'client_credentials'],
      code_challenge_methods_supported: ['S256'],
      ...extra,
    },
  })
  peer.route(`/${id}/register`, { status: 201, json: { client_id: `client-${id}`, redirect_uris: [`http://127.0.0.1:${relayPort}/oauth/callback`] } }, 'POST')
  peer.route(`/${id}/token`, { json: { access_token: `token-${id}`, token_type: 'Bearer', expires_in: 3600 } }, 'POST')
  return { server_id: id, mcp_url: `${NAME}/${id}/mcp` }
}

beforeAll(async () => {
  relayPort = await freePort()
  peer = await startScriptedServer({ tls: SELF_SIGNED })
  proxy = await startRecordingProxy(peer.port)
  const servers = [
    scriptServer('at-name', NAME),
    scriptServer('at-ipv4', IPV4),
    scriptServer('at-ipv6', IPV6),
    { ...scriptServer('service-ipv4', IPV4), grant_type: 'client_credentials', client_id: 'relay-svc', client_secret: 'svc-secret-value' },
    scriptServer('at-private', 'https://10.0.0.1'),
    // NO_PROXY: the loopback peer reached directly, with TLS, at the address the certificate names.
    {
      server_id: 'direct',
      mcp_url: `https://127.0.0.1:${peer.port}/direct/mcp`,
      grant_type: 'client_credentials',
      client_id: 'relay-direct',
      client_secret: 'direct-secret-value',
      token_url: `https://127.0.0.1:${peer.port}/direct/token`,
    },
  ]
  peer.route('/direct/token', { json: { access_token: 'token-direct', token_type: 'Bearer', expires_in: 3600 } }, 'POST')
  relay = await startRelayProcess({
    STORE_URL: 'memory://',
    MCP_SERVERS_JSON: JSON.stringify({ servers }),
    NODE_USE_ENV_PROXY: '1',
    HTTPS_PROXY: proxy.url,
    NO_PROXY: '127.0.0.1',
    NODE_EXTRA_CA_CERTS: SELF_SIGNED_CERT_PATH,
  }, { port: relayPort })
})

afterAll(async () => {
  await relay?.stop()
  await Promise.all([proxy?.close(), peer?.close()])
})

// Each test looks at what the proxy and the peer got since it began. Tunnels are kept alive
// across tests (one per origin), so a test counts the tunnels opened so far to its target.
let proxySeen = 0
beforeEach(() => {
  proxySeen = proxy.requests.length
  peer.requests.length = 0
})

async function authStatus(serverId: string) {
  const answer = await relay.post('/tools/auth-status', { user_id: 'ada', server_id: serverId })
  expect(answer.status).toBe(200)
  return answer.body.servers[0] as { status: string; login_url?: string; message: string; auth?: string }
}

const tunnelsTo = (target: string) => proxy.requests.filter((request) => request.kind === 'connect' && request.target === target).length
const proxiedInThisTest = () => proxy.requests.slice(proxySeen)
const plainRequests = () => proxiedInThisTest().filter((request) => request.kind === 'plain')

describe('an environment proxy: every https target through CONNECT, TLS end to end', () => {
  it('a token request to an authorization server at an IPv4 literal goes through a tunnel, never in clear to the proxy', async () => {
    const server = await authStatus('service-ipv4')
    // The proxy only ever saw CONNECT; the peer got the token request over TLS.
    expect(plainRequests()).toEqual([])
    expect(server).toMatchObject({ status: 'authorized', auth: 'service_account' })
    expect(peer.requests.map(({ method, path }) => ({ method, path }))).toContainEqual({ method: 'POST', path: '/service-ipv4/token' })
    expect(tunnelsTo(`${CERTIFIED.ipv4}:443`)).toBeGreaterThan(0)
  })

  it.each([
    ['a host name', 'at-name', `${CERTIFIED.name}:443`],
    ['an IPv4 literal', 'at-ipv4', `${CERTIFIED.ipv4}:443`],
    ['an IPv6 literal', 'at-ipv6', `[${CERTIFIED.ipv6}]:443`],
  ])('discovery and registration at an authorization server at %s go through CONNECT', async (_form, serverId, target) => {
    const server = await authStatus(serverId)
    expect(plainRequests()).toEqual([])
    expect(server.status, server.message).toBe('need_auth')
    expect(server.login_url).toMatch(/\/oauth\/start\//)
    expect(peer.requests.map(({ method, path }) => ({ method, path }))).toContainEqual({ method: 'GET', path: `/.well-known/oauth-authorization-server/${serverId}` })
    expect(peer.requests.map(({ method, path }) => ({ method, path }))).toContainEqual({ method: 'POST', path: `/${serverId}/register` })
    expect(tunnelsTo(target)).toBeGreaterThan(0)
  })

  it("the SSRF rule judges the target behind the proxy, not the proxy (which is on loopback): a private authorization server is refused before any tunnel", async () => {
    const server = await authStatus('at-private')
    expect(server.status).toBe('error')
    expect(server.message).toContain('https://10.0.0.1 points to a private or loopback address')
    expect(proxy.requests.filter((request) => request.kind === 'connect' && request.target.startsWith('10.0.0.1'))).toEqual([])
    expect(plainRequests()).toEqual([])
  })

  it('a NO_PROXY host is reached directly, with TLS', async () => {
    const server = await authStatus('direct')
    expect(server).toMatchObject({ status: 'authorized', auth: 'service_account' })
    expect(peer.requests.map(({ method, path }) => ({ method, path }))).toContainEqual({ method: 'POST', path: '/direct/token' })
    expect(proxiedInThisTest()).toEqual([])
  })
})
