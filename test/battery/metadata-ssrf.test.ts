// Metadata that points the relay where it must not go (DESIGN.md §3, §6): protected-resource and
// authorization-server metadata, 401 challenges and redirects naming the store's Redis port, a
// cloud metadata address, private and loopback addresses, or plain http on an untrusted host.
// Each is refused with a clear error naming the URL problem, and no request goes there: a
// listening trap socket counts connections, and every request the relay process makes is seen
// through undici's diagnostics channel.
import diagnostics from 'node:diagnostics_channel'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { startSilentPort } from './fault-upstream.ts'
import { answeredByStatus, createTally } from './harness.ts'

interface Case {
  name: string
  /** PRM authorization_servers[0]; default this peer's /as-<name>. */
  authorizationServer?: () => string
  /** Overrides in the authorization-server metadata. */
  metadata?: () => Record<string, unknown>
  /** PRM `resource`; default the case's own MCP URL. */
  resource?: () => string
  /** The 401 challenge's resource_metadata; default this peer's PRM URL for the case. */
  challengeMetadata?: () => string
  /** The PRM document never ends: megabytes of JSON string, for as long as the relay reads. */
  endlessPrm?: boolean
  /** Where the PRM or AS metadata URL redirects, instead of answering. */
  redirectPrm?: () => string
  redirectMetadata?: () => string
  /** What auth-status must say; 'sign-in' for the one case that is fine. */
  expect: RegExp | 'sign-in'
}

let peerOrigin = ''
let trap: Awaited<ReturnType<typeof startSilentPort>>
let relay: TestRelay
const tally = createTally('metadata-ssrf')
const trapHost = () => new URL(trap.origin).host
const trapPort = () => new URL(trap.origin).port

const CASES: Case[] = [
  { name: 'control', expect: 'sign-in' },
  // Where the authorization server is said to be.
  { name: 'as-redis-6379', authorizationServer: () => 'http://127.0.0.1:6379', expect: /authorization server http:\/\/127\.0\.0\.1:6379 is not https and its host is not in OAUTH_TRUSTED_HOSTS/ },
  { name: 'as-trap-http', authorizationServer: () => `http://${trapHost()}`, expect: /is not https and its host is not in OAUTH_TRUSTED_HOSTS/ },
  { name: 'as-trap-https', authorizationServer: () => `https://${trapHost()}`, expect: /points to a private or loopback address/ },
  { name: 'as-cloud-metadata', authorizationServer: () => 'https://169.254.169.254/latest/meta-data', expect: /https:\/\/169\.254\.169\.254 points to a private or loopback address/ },
  { name: 'as-private-10', authorizationServer: () => 'https://10.0.0.1/', expect: /points to a private or loopback address/ },
  { name: 'as-private-172', authorizationServer: () => 'https://172.16.5.4/', expect: /points to a private or loopback address/ },
  { name: 'as-localhost-name', authorizationServer: () => `https://localhost:${trapPort()}`, expect: /points to a private or loopback address/ },
  { name: 'as-ipv6-loopback', authorizationServer: () => `https://[::1]:${trapPort()}`, expect: /points to a private or loopback address/ },
  { name: 'as-ipv4-mapped', authorizationServer: () => `https://[::ffff:127.0.0.1]:${trapPort()}`, expect: /points to a private or loopback address/ },
  { name: 'as-decimal-ip', authorizationServer: () => `https://2130706433:${trapPort()}`, expect: /points to a private or loopback address/ },
  { name: 'as-zero', authorizationServer: () => `https://0.0.0.0:${trapPort()}`, expect: /points to a private or loopback address/ },
  { name: 'as-http-public', authorizationServer: () => 'http://as.example.com/', expect: /http:\/\/as\.example\.com is not https/ },
  { name: 'as-not-a-url', authorizationServer: () => 'javascript:alert(1)', expect: /protected-resource metadata at .* could not be read/ },
  // What the authorization server's metadata names.
  { name: 'token-trap', metadata: () => ({ token_endpoint: `http://${trapHost()}/token` }), expect: /token_endpoint http:\/\/127\.0\.0\.1:\d+ is not https/ },
  { name: 'token-redis', metadata: () => ({ token_endpoint: 'http://127.0.0.1:6379/' }), expect: /token_endpoint http:\/\/127\.0\.0\.1:6379 is not https/ },
  { name: 'authorize-cloud-metadata', metadata: () => ({ authorization_endpoint: 'https://169.254.169.254/authorize' }), expect: /authorization_endpoint https:\/\/169\.254\.169\.254 points to a private/ },
  { name: 'register-trap', metadata: () => ({ registration_endpoint: `https://${trapHost()}/register` }), expect: /registration_endpoint https:\/\/127\.0\.0\.1:\d+ points to a private/ },
  { name: 'token-private-192', metadata: () => ({ token_endpoint: 'https://192.168.1.1/token' }), expect: /token_endpoint https:\/\/192\.168\.1\.1 points to a private/ },
  { name: 'authorize-http-public', metadata: () => ({ authorization_endpoint: 'http://login.example.com/authorize' }), expect: /authorization_endpoint http:\/\/login\.example\.com is not https/ },
  // The 401 challenge's resource_metadata, and redirects from trusted metadata URLs.
  { name: 'challenge-trap', challengeMetadata: () => `http://${trapHost()}/.well-known/oauth-protected-resource`, expect: /is not https and its host is not in OAUTH_TRUSTED_HOSTS/ },
  { name: 'challenge-cloud-metadata', challengeMetadata: () => 'http://169.254.169.254/latest/meta-data/iam', expect: /http:\/\/169\.254\.169\.254 is not https/ },
  { name: 'prm-redirect-trap', redirectPrm: () => `http://${trapHost()}/prm`, expect: /protected-resource metadata at .* could not be read/ },
  { name: 'metadata-redirect-trap', redirectMetadata: () => `http://${trapHost()}/metadata`, expect: /no authorization server metadata found for .*\/as-metadata-redirect-trap/ },
  // Metadata about something else.
  { name: 'resource-other', resource: () => `${peerOrigin}/mcp-control`, expect: /names resource .*\/mcp-control, not this server/ },
  // A document without end, from the trusted MCP host itself.
  { name: 'prm-endless', endlessPrm: true, expect: /the answer from http:\/\/127\.0\.0\.1:\d+ is larger than 1 MiB/ },
  { name: 'issuer-mismatch', metadata: () => ({ issuer: 'https://evil.example' }), expect: /has issuer https:\/\/evil\.example, expected .*\/as-issuer-mismatch; sign-in refused/ },
]

/** Every host this process sent an HTTP request to while the cases ran: through fetch (undici) or node:http. */
const requestedOrigins = new Set<string>()
const onRequest = (message: unknown) => {
  const { request } = message as { request: { origin: string } }
  requestedOrigins.add(new URL(request.origin).host)
}
const onHttpRequest = (message: unknown) => {
  const { request } = message as { request: { getHeader(name: string): unknown } }
  requestedOrigins.add(String(request.getHeader('host')))
}

let peer: ReturnType<typeof createServer>
/** Bytes of the endless document the peer got to write before the relay hung up. */
let endlessBytes = 0

beforeAll(async () => {
  trap = await startSilentPort()
  peer = createServer((req, res) => answer(req, res))
  await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve))
  peerOrigin = `http://127.0.0.1:${(peer.address() as AddressInfo).port}`
  relay = await startRelay({
    // Each case is its own server on the one peer; its mcp_url's host:port is trusted, the trap's port is not.
    servers: CASES.map((entry) => ({ server_id: entry.name, mcp_url: `${peerOrigin}/mcp-${entry.name}` })),
    env: { UPSTREAM_TIMEOUT_SECONDS: '2' },
  })
  diagnostics.subscribe('undici:request:create', onRequest)
  diagnostics.subscribe('http.client.request.start', onHttpRequest)
})

afterAll(async () => {
  diagnostics.unsubscribe('undici:request:create', onRequest)
  diagnostics.unsubscribe('http.client.request.start', onHttpRequest)
  tally.print({ cases: CASES.length, trapConnections: trap?.accepted(), relayAnswers: await answeredByStatus([relay]) })
  await relay?.close()
  await trap?.close()
  await new Promise((resolve) => peer?.close(resolve))
})

function answer(req: IncomingMessage, res: ServerResponse): void {
  const path = new URL(req.url ?? '/', peerOrigin).pathname
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
  let match = /^\/mcp-(.+)$/.exec(path)
  if (match) {
    const entry = CASES.find((candidate) => candidate.name === match![1])!
    const prm = entry.challengeMetadata?.() ?? `${peerOrigin}/prm-${entry.name}`
    req.resume()
    json(401, { error: 'invalid_token' }, { 'www-authenticate': `Bearer resource_metadata="${prm}"` })
    return
  }
  match = /^\/prm-(.+)$/.exec(path)
  if (match) {
    const entry = CASES.find((candidate) => candidate.name === match![1])!
    if (entry.redirectPrm) {
      res.writeHead(307, { location: entry.redirectPrm() }).end()
      return
    }
    if (entry.endlessPrm) {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(`{"resource":"${peerOrigin}/mcp-${entry.name}","authorization_servers":["`)
      const chunk = Buffer.alloc(256 * 1024, 'x')
      const pump = () => {
        while (!res.destroyed && endlessBytes < 500 * 1024 * 1024) {
          endlessBytes += chunk.length
          if (!res.write(chunk)) {
            res.once('drain', pump)
            return
          }
        }
        res.end('"]}')
      }
      res.on('error', () => undefined)
      pump()
      return
    }
    json(200, {
      resource: entry.resource?.() ?? `${peerOrigin}/mcp-${entry.name}`,
      authorization_servers: [entry.authorizationServer?.() ?? `${peerOrigin}/as-${entry.name}`],
      scopes_supported: ['mcp:read'],
    })
    return
  }
  // RFC 8414 path insertion: /.well-known/oauth-authorization-server/as-<name>
  match = /^\/\.well-known\/oauth-authorization-server\/as-(.+)$/.exec(path)
  if (match) {
    const entry = CASES.find((candidate) => candidate.name === match![1])!
    if (entry.redirectMetadata) {
      res.writeHead(302, { location: entry.redirectMetadata() }).end()
      return
    }
    const issuer = `${peerOrigin}/as-${entry.name}`
    json(200, {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      registration_endpoint: `${issuer}/register`,
      response_types_supported: ['code'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none'],
      ...entry.metadata?.(),
    })
    return
  }
  if (/^\/as-[^/]+\/register$/.test(path) && req.method === 'POST') {
    req.resume()
    json(201, { client_id: 'registered-client', redirect_uris: [`${relay.url}/oauth/callback`], token_endpoint_auth_method: 'none' })
    return
  }
  json(404, { error: 'not_found' })
}

describe('metadata that points where it must not', () => {
  for (const entry of CASES) {
    it(`${entry.name}: ${entry.expect === 'sign-in' ? 'signs in' : 'refused with the URL problem named'}`, async () => {
      tally.fault(entry.name)
      const status = await relay.post('/tools/auth-status', { user_id: 'victim', server_id: entry.name })
      tally.add(status.status)
      expect(status.status).toBe(200)
      const server = status.body.servers[0]
      if (entry.expect === 'sign-in') {
        expect(server).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
        return
      }
      expect(server.status, JSON.stringify(server)).toBe('error')
      expect(server.message).toMatch(/^Sign-in to [\w-]+ is unavailable: /)
      expect(server.message).toMatch(entry.expect)
      expect(server.login_url).toBeUndefined()
      expect(status.body.errors).toEqual([{ server_id: entry.name, error: server.message }])
      // The other two tool routes say the same.
      const call = await relay.post('/tools/call-tool', { user_id: 'victim', tool_ref: `${entry.name}::anything`, input: {} })
      tally.add(call.status)
      expect(call.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', message: server.message })
      const list = await relay.post('/tools/list-tools', { user_id: 'victim', server_id: entry.name })
      tally.add(list.status)
      expect(list.body.errors).toEqual([{ server_id: entry.name, error: server.message }])
    })
  }

  it('an endless document is read only up to a bound', () => {
    expect(endlessBytes).toBeGreaterThan(0)
    expect(endlessBytes).toBeLessThan(16 * 1024 * 1024)
  })

  it('no request left for the trap, Redis, a metadata address, a private address or an untrusted host', () => {
    expect(trap.accepted()).toBe(0)
    const allowed = new Set([new URL(peerOrigin).host, new URL(relay.url).host])
    // The observers saw the relay's own requests (so an empty list below means something).
    expect(requestedOrigins).toContain(new URL(peerOrigin).host)
    expect([...requestedOrigins].filter((host) => !allowed.has(host))).toEqual([])
    expect(tally.serverErrors()).toBe(0)
  })
})
