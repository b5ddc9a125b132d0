// DESIGN.md §6: the SSRF rule judges IPv6 forms that carry an IPv4 address by that address
// (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16; the local-use NAT64 prefix
// 64:ff9b:1::/48 is refused whole), refuses site-local fec0::/10, and trusts a configured URL
// for its origin, not its host. Each form is tried when a URL is checked (a name resolving to
// it, and an IP-literal URL) and when a connection is opened (the guard's connectLookup, asked as
// node:net asks it; a refused literal through the relay's node:http stack, which must not
// connect). A tripwire keeps every socket of this process on loopback.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { parseTrustedHosts } from '../../src/config/trusted-hosts.ts'
import { createHttpFetch, type HttpFetch } from '../../src/mcp/http-fetch.ts'
import { createUrlGuard, findRefusal, UrlRefusedError, type UrlGuard } from '../../src/oauth/url-guard.ts'
import { allowLoopbackOnly, createResolver } from '../support/made-up-names.ts'

const tripwire = allowLoopbackOnly()
const opened: HttpFetch[] = []
let web: Server
let webPort: number
let webConnections = 0

beforeAll(async () => {
  web = createServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"served":true}')
  })
  web.on('connection', () => webConnections++)
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve))
  webPort = (web.address() as AddressInfo).port
})

beforeEach(() => {
  tripwire.blocked.length = 0
})

afterEach(() => {
  for (const http of opened.splice(0)) http.close()
  expect(tripwire.blocked, 'addresses off loopback that a socket tried').toEqual([])
})

afterAll(async () => {
  tripwire.stop()
  web?.closeAllConnections()
  await new Promise((resolve) => web?.close(resolve))
})

function guardWith(options: { trusted?: string; configuredUrls?: string[]; names?: Record<string, string> } = {}): UrlGuard {
  const parsed = parseTrustedHosts(options.trusted ?? '')
  if ('problem' in parsed) throw new Error(parsed.problem)
  return createUrlGuard({ trustedHosts: parsed.hosts, configuredUrls: options.configuredUrls ?? [], lookup: createResolver(options.names ?? {}).lookup })
}

/** What the guard's connect-time lookup for `url` answers (the address, or the refusal), asked as node:net asks, without a socket. */
function askConnectLookup(guard: UrlGuard, url: string): Promise<string | Error> {
  const lookup = guard.connectLookup(new URL(url))
  if (!lookup) return Promise.resolve('any address (trusted)')
  const hostname = new URL(url).hostname.replace(/^\[(.*)\]$/, '$1')
  return new Promise((resolve) => {
    lookup(hostname, { all: true, hints: 0 }, (error, found) => resolve(error ?? (typeof found === 'string' ? found : found[0]!.address)))
  })
}

const literal = (address: string) => `https://[${address}]/`

// [address, what it carries or is, allowed]
const FORMS: Array<[string, string, boolean]> = [
  ['::ffff:127.0.0.1', 'IPv4-mapped loopback', false],
  ['::ffff:a9fe:a9fe', 'IPv4-mapped 169.254.169.254', false],
  ['::ffff:8.8.8.8', 'IPv4-mapped public', true],
  ['::127.0.0.1', 'IPv4-compatible loopback', false],
  ['::a00:1', 'IPv4-compatible 10.0.0.1', false],
  ['::c0a8:101', 'IPv4-compatible 192.168.1.1', false],
  ['::808:808', 'IPv4-compatible public', true],
  ['64:ff9b::7f00:1', 'NAT64 loopback', false],
  ['64:ff9b::a9fe:a9fe', 'NAT64 169.254.169.254', false],
  ['64:ff9b::ac10:5', 'NAT64 172.16.0.5', false],
  ['64:ff9b::808:808', 'NAT64 public', true],
  ['64:ff9b:1::a00:1', 'local-use NAT64, private at /96', false],
  ['64:ff9b:1:a00:0:100::', 'local-use NAT64, private at /48', false],
  ['64:ff9b:1::808:808', 'local-use NAT64, public at /96', false],
  ['2002:7f00:1::1', '6to4 loopback', false],
  ['2002:a9fe:a9fe::', '6to4 169.254.169.254', false],
  ['2002:c0a8:101:1::5', '6to4 192.168.1.1', false],
  ['2002:808:808::1', '6to4 public', true],
  ['fec0::1', 'site-local', false],
  ['feff::1', 'site-local, top of fec0::/10', false],
  ['2606:4700::1111', 'public', true],
]

describe('IPv6 forms that carry an IPv4 address are judged by it; site-local is refused', () => {
  it.each(FORMS)('check: a name resolving to %s (%s) is allowed: %s', async (address, _what, allowed) => {
    const guard = guardWith({ names: { 'form.example': address } })
    const checked = guard.check(new URL('https://form.example/'), 'authorization server')
    if (allowed) await expect(checked).resolves.toBeUndefined()
    else await expect(checked).rejects.toThrow('authorization server https://form.example points to a private or loopback address')
  })

  it.each(FORMS)('check: the literal https://[%s]/ (%s) is allowed: %s', async (address, _what, allowed) => {
    const checked = guardWith().check(new URL(literal(address)), 'authorization server')
    if (allowed) await expect(checked).resolves.toBeUndefined()
    else await expect(checked).rejects.toThrow(/points to a private or loopback address/)
  })

  it.each(FORMS)('connect: a name resolving to %s (%s) is allowed: %s', async (address, _what, allowed) => {
    const answer = await askConnectLookup(guardWith({ names: { 'form.example': address } }), 'https://form.example/')
    if (allowed) expect(answer).toBe(address)
    else expect(answer).toBeInstanceOf(UrlRefusedError)
  })

  it.each(FORMS)('connect: the literal [%s] (%s) is allowed: %s', async (address, _what, allowed) => {
    const answer = await askConnectLookup(guardWith(), literal(address))
    if (allowed) expect(answer).toBe(new URL(literal(address)).hostname.slice(1, -1))
    else expect(answer).toBeInstanceOf(UrlRefusedError)
  })

  it.each(FORMS.filter(([, , allowed]) => !allowed))('connect: a request to the literal [%s] (%s) through the relay\'s fetch is refused before any socket', async (address) => {
    const guard = guardWith()
    const http = createHttpFetch({ connectLookup: guard.connectLookup })
    opened.push(http)
    const error = await http.fetch(`http://[${address}]:${webPort}/token`, { method: 'POST', body: 'refresh_token=rt' }).then(() => undefined, (thrown: unknown) => thrown)
    expect(findRefusal(error)?.message).toMatch(/, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS$/)
  })
})

describe('a trusted IPv4 range trusts the IPv6 forms that carry its addresses', () => {
  it.each([
    ['::ffff:127.0.0.1', true],
    ['::127.0.0.1', true],
    ['64:ff9b::7f00:1', true],
    ['2002:7f00:1::1', true],
    ['::ffff:10.0.0.1', false],
    ['64:ff9b::a00:1', false],
    // Local-use NAT64 carries no address the relay reads: only an IPv6 range trusts it.
    ['64:ff9b:1::7f00:1', false],
  ])('with 127.0.0.0/8 trusted, [%s] is trusted: %s', async (address, trusted) => {
    const guard = guardWith({ trusted: '127.0.0.0/8', names: { 'form.example': address } })
    expect(guard.isTrusted(new URL(`http://[${address}]:8080/`))).toBe(trusted)
    const checked = guard.check(new URL('https://form.example/'), 'authorization server')
    if (trusted) await expect(checked).resolves.toBeUndefined()
    else await expect(checked).rejects.toThrow(/private or loopback address/)
    const answer = await askConnectLookup(guard, 'http://form.example/')
    if (trusted) expect(answer).toBe(address)
    else expect(answer).toBeInstanceOf(UrlRefusedError)
  })

  it('64:ff9b:1::/48 as an entry trusts the local-use NAT64 prefix', async () => {
    const guard = guardWith({ trusted: '64:ff9b:1::/48', names: { 'nat.example': '64:ff9b:1::a00:1' } })
    expect(guard.isTrusted(new URL('http://[64:ff9b:1::a00:1]/'))).toBe(true)
    await expect(guard.check(new URL('https://nat.example/'), 'authorization server')).resolves.toBeUndefined()
    expect(await askConnectLookup(guard, 'https://nat.example/')).toBe('64:ff9b:1::a00:1')
  })
})

describe('a configured URL trusts its origin (scheme, host, port), not its host', () => {
  const names = { 'mcp.example': '127.0.0.1' }

  it.each([
    ['https://mcp.example/.well-known/oauth-protected-resource/mcp', true],
    ['https://mcp.example:443/token', true],
    ['https://MCP.example/token', true],
    ['http://mcp.example/', false],
    ['http://mcp.example:443/', false],
    ['https://mcp.example:8443/', false],
    ['wss://mcp.example/', false],
  ])('with https://mcp.example/mcp configured, %s is trusted: %s', async (url, trusted) => {
    const guard = guardWith({ configuredUrls: ['https://mcp.example/mcp'], names })
    expect(guard.isTrusted(new URL(url))).toBe(trusted)
    const checked = guard.check(new URL(url), 'OAuth URL')
    if (trusted) await expect(checked).resolves.toBeUndefined()
    else await expect(checked).rejects.toThrow(/is not https|private or loopback address/)
    // Trusted: the name's loopback address is fine when connecting too.
    const answer = await askConnectLookup(guard, url)
    if (trusted) expect(answer).toBe('127.0.0.1')
    else expect(answer).toBeInstanceOf(UrlRefusedError)
  })

  it('an http mcp_url does not make https on its host:port trusted; the relay reaches only the configured origin', async () => {
    const guard = guardWith({ configuredUrls: [`http://mcp.example:${webPort}/mcp`], names })
    expect(guard.isTrusted(new URL(`https://mcp.example:${webPort}/`))).toBe(false)
    await expect(guard.check(new URL(`https://mcp.example:${webPort}/token`), 'token_endpoint')).rejects.toThrow(
      `token_endpoint https://mcp.example:${webPort} points to a private or loopback address`,
    )
    const http = createHttpFetch({ connectLookup: guard.connectLookup })
    opened.push(http)
    expect(await (await http.fetch(`http://mcp.example:${webPort}/mcp`)).json()).toEqual({ served: true })
    const before = webConnections
    const error = await http.fetch(`https://mcp.example:${webPort}/token`).then(() => undefined, (thrown: unknown) => thrown)
    expect(findRefusal(error)?.message).toBe(
      `https://mcp.example:${webPort} resolved to 127.0.0.1, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS`,
    )
    expect(webConnections).toBe(before)
  })
})
