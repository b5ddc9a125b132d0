// DESIGN.md §3 TRUST_PROXY: the client's address is the socket's peer unless TRUST_PROXY says how
// many proxies sit in front (the client is then the N-th address from the right of
// X-Forwarded-For, the socket's peer being the first proxy) or which addresses they have. The
// per-client rate limits on the browser routes and /files count that address, an IPv6 client
// per /64 and an IPv4-mapped one as the IPv4 address. Over real HTTP on loopback: the socket's
// peer is 127.0.0.1 (the "proxy"), and X-Forwarded-For names the browsers behind it.
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { afterEach, describe, expect, it } from 'vitest'
import { makeApp } from './helpers.ts'

const apps: FastifyInstance[] = []

afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()))
})

/** The app on a real port with a limit of one request a minute per client on each limited route. */
async function relayBehind(trustProxy: string | undefined): Promise<(path: string, forwardedFor?: string) => Promise<number>> {
  const { app } = await makeApp({
    environment: trustProxy === undefined ? {} : { TRUST_PROXY: trustProxy },
    deps: { rateLimit: { max: 1, timeWindowMs: 60_000 }, filesRateLimit: { max: 1, timeWindowMs: 60_000 } },
  })
  apps.push(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  return async (path, forwardedFor) => {
    const response = await fetch(`${origin}${path}`, {
      headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
      signal: AbortSignal.timeout(5000),
    })
    await response.body?.cancel()
    return response.status
  }
}

const PAGE = '/oauth/start/good'
const FILE = '/files/kept'

describe('TRUST_PROXY and the per-client rate limits', () => {
  it.each([PAGE, FILE])('TRUST_PROXY=1: two browsers behind one proxy have a bucket each on %s', async (path) => {
    const get = await relayBehind('1')
    expect(await get(path, '198.51.100.1')).toBe(200)
    expect(await get(path, '198.51.100.2')).toBe(200)
    expect(await get(path, '198.51.100.1')).toBe(429)
    expect(await get(path, '198.51.100.2')).toBe(429)
  })

  it.each([PAGE, FILE])('unset: every browser behind the proxy shares the proxy\'s bucket on %s', async (path) => {
    const get = await relayBehind(undefined)
    expect(await get(path, '198.51.100.1')).toBe(200)
    expect(await get(path, '198.51.100.2')).toBe(429)
  })

  it('unset: a spoofed X-Forwarded-For changes nothing, neither a fresh bucket nor another client\'s', async () => {
    const get = await relayBehind(undefined)
    expect(await get(PAGE)).toBe(200)
    for (const spoofed of ['203.0.113.9', '203.0.113.9, 198.51.100.7', '2001:db8::1', 'garbage']) expect(await get(PAGE, spoofed)).toBe(429)
  })

  it('TRUST_PROXY=1: the client is the last entry, whatever a browser puts before it', async () => {
    const get = await relayBehind('1')
    expect(await get(PAGE, '198.51.100.1')).toBe(200)
    // What the browser sent itself comes first; the proxy appends the address it saw.
    expect(await get(PAGE, '203.0.113.50, 198.51.100.1')).toBe(429)
    expect(await get(PAGE, '203.0.113.51, 198.51.100.1')).toBe(429)
  })

  it('TRUST_PROXY=2: the client is the second entry from the right (the first is the outer proxy)', async () => {
    const get = await relayBehind('2')
    expect(await get(PAGE, 'spoof-1, 198.51.100.1, 10.0.0.2')).toBe(200)
    expect(await get(PAGE, 'spoof-2, 198.51.100.1, 10.0.0.3')).toBe(429)
    expect(await get(PAGE, '198.51.100.2, 10.0.0.2')).toBe(200)
  })

  it.each(['127.0.0.1', '127.0.0.0/8', '10.0.0.0/8, 127.0.0.1', '::1, 127.0.0.1/32'])('TRUST_PROXY=%s (the socket is a listed proxy): X-Forwarded-For is read', async (proxies) => {
    const get = await relayBehind(proxies)
    expect(await get(PAGE, '198.51.100.1')).toBe(200)
    expect(await get(PAGE, '198.51.100.2')).toBe(200)
    expect(await get(PAGE, '198.51.100.1')).toBe(429)
  })

  it('TRUST_PROXY=10.0.0.1,127.0.0.1: listed proxies are skipped from the right, the first other address is the client', async () => {
    const get = await relayBehind('10.0.0.1,127.0.0.1')
    expect(await get(PAGE, '198.51.100.1, 10.0.0.1')).toBe(200)
    expect(await get(PAGE, 'spoof, 198.51.100.1')).toBe(429)
  })

  it('TRUST_PROXY naming other addresses than the socket\'s: X-Forwarded-For is not read', async () => {
    const get = await relayBehind('10.0.0.0/8,fd00::/8')
    expect(await get(PAGE, '198.51.100.1')).toBe(200)
    expect(await get(PAGE, '198.51.100.2')).toBe(429)
  })

  it('an IPv6 client is counted per /64; another /64 has its own bucket', async () => {
    const get = await relayBehind('1')
    expect(await get(PAGE, '2001:db8:1:2::1')).toBe(200)
    expect(await get(PAGE, '2001:db8:1:2:ffff:ffff:ffff:9')).toBe(429)
    expect(await get(PAGE, '2001:DB8:1:2:0:0:0:77')).toBe(429)
    expect(await get(PAGE, '2001:db8:1:3::1')).toBe(200)
  })

  it('an IPv4-mapped IPv6 client counts as its IPv4 address', async () => {
    const get = await relayBehind('1')
    expect(await get(PAGE, '::ffff:198.51.100.1')).toBe(200)
    expect(await get(PAGE, '198.51.100.1')).toBe(429)
    expect(await get(PAGE, '::ffff:c633:6401')).toBe(429)
  })
})
