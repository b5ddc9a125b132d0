// DESIGN.md §6: the SSRF rule is checked on the address actually connected to, for every
// outbound connection. Here the parts the relay wires together (create-relay.ts): the guard, the
// node:http stack under the MCP transports (mcp/http-fetch.ts) and the guarded OAuth fetch over
// it, with a resolver the test controls (test/support/made-up-names.ts). Traps listen on loopback
// and count connections: a refusal must come before any. A tripwire keeps every socket of this
// process on loopback, whatever the code under test does.
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type LookupFunction, type Server as NetServer } from 'node:net'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { parseTrustedHosts } from '../../src/config/trusted-hosts.ts'
import { createHttpFetch, type HttpFetch } from '../../src/mcp/http-fetch.ts'
import { createGuardedFetch, createUrlGuard, findRefusal, UrlRefusedError, type UrlGuard } from '../../src/oauth/url-guard.ts'
import { allowLoopbackOnly, createResolver, PUBLIC_ADDRESS, type Answer } from '../support/made-up-names.ts'

interface Listener {
  port: number
  connections(): number
  close(): Promise<void>
}

/** A TCP server that counts connections and answers nothing. */
async function startTrap(host: string): Promise<Listener> {
  let connections = 0
  const server: NetServer = createNetServer((socket) => {
    connections++
    socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  return { port: (server.address() as AddressInfo).port, connections: () => connections, close: () => new Promise((resolve) => server.close(() => resolve())) }
}

/** An HTTP server that answers every request 200 `{"served":true}` (closing the connection after `/close`) and counts connections. */
async function startWeb(host: string): Promise<Listener> {
  let connections = 0
  const server: HttpServer = createHttpServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json', ...(req.url === '/close' ? { connection: 'close' } : {}) }).end('{"served":true}')
  })
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => connections,
    close: () => {
      server.closeAllConnections()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

let trap4: Listener
let trap6: Listener
let web4: Listener
let web6: Listener
const tripwire = allowLoopbackOnly()
const opened: HttpFetch[] = []

beforeAll(async () => {
  ;[trap4, trap6, web4, web6] = await Promise.all([startTrap('127.0.0.1'), startTrap('::1'), startWeb('127.0.0.1'), startWeb('::1')])
})

let trapped = 0
beforeEach(() => {
  trapped = trap4.connections() + trap6.connections()
  tripwire.blocked.length = 0
})

afterEach(() => {
  for (const http of opened.splice(0)) http.close()
  // Nothing reached the traps, and no socket of this process tried an address off loopback.
  expect(trap4.connections() + trap6.connections() - trapped, 'connections to a trap').toBe(0)
  expect(tripwire.blocked, 'addresses off loopback that a socket tried').toEqual([])
})

afterAll(async () => {
  tripwire.stop()
  await Promise.all([trap4?.close(), trap6?.close(), web4?.close(), web6?.close()])
})

/** The relay's two fetches over one guard, as create-relay.ts builds them. */
function relayFetches(options: { trusted?: string; configuredUrls?: string[]; names?: Record<string, Answer>; lookup?: LookupFunction }) {
  const parsed = parseTrustedHosts(options.trusted ?? '')
  if ('problem' in parsed) throw new Error(parsed.problem)
  const resolver = createResolver(options.names ?? {})
  const guard = createUrlGuard({ trustedHosts: parsed.hosts, configuredUrls: options.configuredUrls ?? [], lookup: options.lookup ?? resolver.lookup })
  const http = createHttpFetch({ connectLookup: guard.connectLookup })
  opened.push(http)
  return { guard, resolver, mcpFetch: http.fetch, oauthFetch: createGuardedFetch({ guard, timeoutMs: 5000, fetch: http.fetch }) }
}

async function refusalOf(work: Promise<unknown>): Promise<UrlRefusedError> {
  const error = await work.then(
    () => undefined,
    (thrown: unknown) => thrown,
  )
  const refusal = findRefusal(error)
  expect(refusal, `expected a refusal, got ${String(error)}`).toBeInstanceOf(UrlRefusedError)
  return refusal!
}

const rebinding = { 'rebind.example': { checked: PUBLIC_ADDRESS, connecting: '127.0.0.1' } }

describe('DNS rebinding: a name public when checked and loopback when connecting is refused at connect time', () => {
  it.each([
    ['a metadata request', (port: number) => `https://rebind.example:${port}/.well-known/oauth-authorization-server`, undefined],
    ['a token request', (port: number) => `https://rebind.example:${port}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'rt-secret-value' }) }],
  ] as const)('OAuth path, %s', async (_name, url, init) => {
    const { oauthFetch, resolver } = relayFetches({ names: rebinding })
    const refusal = await refusalOf(oauthFetch(url(trap4.port), init))
    expect(refusal.message).toBe(
      `https://rebind.example:${trap4.port} resolved to 127.0.0.1, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS`,
    )
    expect(refusal.message).not.toContain('rt-secret-value')
    // The check saw the public address and let the request go; the connection saw 127.0.0.1.
    expect(resolver.asked).toEqual([
      { hostname: 'rebind.example', connecting: false, address: PUBLIC_ADDRESS },
      { hostname: 'rebind.example', connecting: true, address: '127.0.0.1' },
    ])
  })

  it.each([
    ['Streamable HTTP', (url: URL, fetch: typeof globalThis.fetch) => new StreamableHTTPClientTransport(url, { fetch })],
    ['legacy HTTP+SSE', (url: URL, fetch: typeof globalThis.fetch) => new SSEClientTransport(url, { fetch })],
  ] as const)('MCP path, an SDK client over %s', async (_name, transport) => {
    const { mcpFetch, resolver } = relayFetches({ names: rebinding })
    const client = new Client({ name: 'test', version: '1.0.0' })
    const connecting = client.connect(transport(new URL(`http://rebind.example:${trap4.port}/mcp`), mcpFetch as typeof globalThis.fetch))
    const error = await connecting.then(() => undefined, (thrown: unknown) => thrown)
    await client.close()
    // The Streamable HTTP transport passes the fetch's error on; the SSE one flattens it into its message.
    const text = findRefusal(error)?.message ?? String(error)
    expect(text).toContain(`http://rebind.example:${trap4.port} resolved to 127.0.0.1, a private or loopback address, when connecting`)
    expect(resolver.asked.every((question) => question.connecting && question.address === '127.0.0.1')).toBe(true)
    expect(resolver.asked.length).toBeGreaterThan(0)
  })

  it('a new connection is checked again: a name that moves out of a trusted range is refused on reconnect', async () => {
    const names: Record<string, Answer> = { 'moving.example': '127.0.0.1' }
    const { mcpFetch } = relayFetches({ trusted: '127.0.0.1/32', names })
    // The server closes the connection after answering, so the next request opens a new one; by
    // then the name answers another loopback address, outside the trusted /32.
    const first = await mcpFetch(`http://moving.example:${web4.port}/close`)
    expect(await first.json()).toEqual({ served: true })
    const before = web4.connections()
    names['moving.example'] = '127.0.0.2'
    const refusal = await refusalOf(mcpFetch(`http://moving.example:${web4.port}/`))
    expect(refusal.message).toMatch(/^http:\/\/moving\.example:\d+ resolved to 127\.0\.0\.2, a private or loopback address, when connecting/)
    expect(web4.connections()).toBe(before)
  })
})

describe('the rule itself', () => {
  it.each([
    ['93.184.215.14', true],
    ['8.8.8.8', true],
    ['2606:4700::1111', true],
    ['::ffff:8.8.8.8', true],
    ['::ffff:127.0.0.1', false],
    ['::ffff:169.254.169.254', false],
    ['10.1.2.3', false],
    ['fd12::1', false],
    ['64:ff9b::a00:1', false],
  ])('an https URL whose host resolves to %s passes the check: %s', async (address, allowed) => {
    const { guard } = relayFetches({ names: { 'as.example': address } })
    const checked = guard.check(new URL('https://as.example/'), 'authorization server')
    if (allowed) await expect(checked).resolves.toBeUndefined()
    else await expect(checked).rejects.toThrow('authorization server https://as.example points to a private or loopback address')
  })
})

describe('trusted hosts may reach loopback, when checked and when connecting', () => {
  it('a host named in OAUTH_TRUSTED_HOSTS', async () => {
    const { oauthFetch, mcpFetch } = relayFetches({ trusted: 'trusted.example', names: { 'trusted.example': '127.0.0.1' } })
    expect(await (await oauthFetch(`http://trusted.example:${web4.port}/token`, { method: 'POST', body: new URLSearchParams({ a: '1' }) })).json()).toEqual({ served: true })
    expect(await (await mcpFetch(`http://trusted.example:${web4.port}/mcp`)).json()).toEqual({ served: true })
  })

  it("a configured mcp_url's host:port, and only that port", async () => {
    const { oauthFetch, mcpFetch } = relayFetches({ configuredUrls: [`http://mcp.example:${web4.port}/mcp`], names: { 'mcp.example': '127.0.0.1' } })
    expect((await oauthFetch(`http://mcp.example:${web4.port}/.well-known/oauth-protected-resource/mcp`)).status).toBe(200)
    expect((await mcpFetch(`http://mcp.example:${web4.port}/mcp`)).status).toBe(200)
    const elsewhere = await refusalOf(mcpFetch(`http://mcp.example:${trap4.port}/`))
    expect(elsewhere.message).toMatch(/^http:\/\/mcp\.example:\d+ resolved to 127\.0\.0\.1, a private or loopback address, when connecting/)
  })

  it('a CIDR: an address in it, and a name that resolves into it', async () => {
    const { oauthFetch, mcpFetch } = relayFetches({ trusted: '127.0.0.0/8', names: { 'cidr.example': '127.0.0.1' } })
    expect((await oauthFetch(`http://127.0.0.1:${web4.port}/`)).status).toBe(200)
    expect((await mcpFetch(`http://cidr.example:${web4.port}/`)).status).toBe(200)
  })

  it.each(['::1', '[::1]', '[::1]:PORT', '::1/128', '[::1]/128', 'fd00::/8,::1/127'])('an IPv6 entry %s reaches http://[::1]:PORT', async (entry) => {
    const { oauthFetch, mcpFetch } = relayFetches({ trusted: entry.replace('PORT', String(web6.port)), names: { 'v6.example': '::1' } })
    expect(await (await oauthFetch(`http://[::1]:${web6.port}/token`, { method: 'POST', body: new URLSearchParams({ a: '1' }) })).json()).toEqual({ served: true })
    expect((await mcpFetch(`http://[::1]:${web6.port}/mcp`)).status).toBe(200)
    if (entry.includes('/')) {
      // A range also trusts a name that resolves into it.
      expect((await mcpFetch(`http://v6.example:${web6.port}/mcp`)).status).toBe(200)
    }
  })

  it('[::1]:PORT trusts that port only', async () => {
    const { oauthFetch, mcpFetch } = relayFetches({ trusted: `[::1]:${web6.port}` })
    await expect(oauthFetch(`http://[::1]:${trap6.port}/`)).rejects.toThrow(`OAuth URL http://[::1]:${trap6.port} is not https and its host is not in OAUTH_TRUSTED_HOSTS`)
    const refusal = await refusalOf(mcpFetch(`http://[::1]:${trap6.port}/`))
    expect(refusal.message).toMatch(/^http:\/\/\[::1\]:\d+ resolved to ::1, a private or loopback address, when connecting/)
  })

  it('fd00::/8 and 2001:db8::1 as entries: the rule says yes, without connecting there', async () => {
    const { guard } = relayFetches({ trusted: 'fd00::/8,2001:db8::1', names: { 'ula.example': 'fd00::5', 'other.example': 'fc00::5' } })
    expect(guard.isTrusted(new URL('http://[fd00::5]:8443/'))).toBe(true)
    expect(guard.isTrusted(new URL('http://[2001:db8::1]:8443/'))).toBe(true)
    expect(guard.isTrusted(new URL('http://[2001:db8::2]/'))).toBe(false)
    expect(guard.connectLookup(new URL('http://[2001:db8::1]/'))).toBeUndefined()
    // A name that resolves into fd00::/8 is allowed at connect time (asked here without a socket).
    expect(await askConnectLookup(guard, 'http://ula.example/')).toBe('fd00::5')
    expect(await askConnectLookup(guard, 'http://other.example/')).toBeInstanceOf(UrlRefusedError)
  })
})

describe('an untrusted host that resolves to a private address is refused before connecting', () => {
  it.each(['10.0.0.5', '169.254.169.254', '172.16.0.9', '192.168.1.1', '100.64.0.1', '0.0.0.0', '127.0.0.1', '::1', 'fd00::5', 'fe80::1', '::ffff:127.0.0.1'])(
    'a name resolving to %s',
    async (address) => {
      const { mcpFetch, resolver } = relayFetches({ names: { 'internal.example': address } })
      const refusal = await refusalOf(mcpFetch(`http://internal.example:${trap4.port}/`))
      expect(refusal.message).toBe(
        `http://internal.example:${trap4.port} resolved to ${address}, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS`,
      )
      expect(resolver.asked).toEqual([{ hostname: 'internal.example', connecting: true, address }])
    },
  )

  it.each([
    ['127.0.0.1', () => `http://127.0.0.1:${trap4.port}/`],
    ['[::1]', () => `http://[::1]:${trap6.port}/`],
    ['[::ffff:7f00:1]', () => `http://[::ffff:7f00:1]:${trap4.port}/`],
  ])('an IP literal %s, which node:net does not look up', async (_name, url) => {
    const refusal = await refusalOf(relayFetches({}).mcpFetch(url()))
    expect(refusal.message).toMatch(/resolved to [\d.:a-f]+, a private or loopback address, when connecting/)
  })

  it('a name that does not resolve fails as a lookup does, and the check says so', async () => {
    const { mcpFetch, oauthFetch } = relayFetches({})
    const error = await mcpFetch(`http://nowhere.example:${trap4.port}/`).then(() => undefined, (thrown: unknown) => thrown)
    expect(error).toMatchObject({ name: 'TypeError', message: 'fetch failed', cause: expect.objectContaining({ code: 'ENOTFOUND' }) })
    await expect(oauthFetch('https://nowhere.example/')).rejects.toThrow('OAuth URL https://nowhere.example does not resolve')
  })
})

/** What the guard's connect-time lookup for `url` answers (the address, or the refusal), asked as node:net asks, without a socket. */
function askConnectLookup(guard: UrlGuard, url: string): Promise<string | Error> {
  const lookup = guard.connectLookup(new URL(url))!
  return new Promise((resolve) => {
    lookup(new URL(url).hostname, { all: true, hints: 0 }, (error, found) => {
      resolve(error ?? (typeof found === 'string' ? found : found[0]!.address))
    })
  })
}
