// DESIGN.md §3 TRUST_PROXY: unset, a number of proxies, or a comma list of their IPv4/IPv6
// addresses and CIDRs. A bad value stops start-up with one line naming the variable; the real
// process says so on stderr and exits 1.
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/load-config.ts'
import { startRelayProcess } from '../support/relay-process.ts'

const load = (value: string | undefined) => loadConfig({ RELAY_API_KEYS: 'k'.repeat(24), STORE_URL: 'memory://', TRUST_PROXY: value })

describe('TRUST_PROXY', () => {
  it.each([
    [undefined, undefined],
    ['', undefined],
    ['1', { hops: 1 }],
    [' 2 ', { hops: 2 }],
    ['10.0.0.1', { proxies: ['10.0.0.1'] }],
    ['10.0.0.0/8, 192.168.1.1/32', { proxies: ['10.0.0.0/8', '192.168.1.1/32'] }],
    ['fd00::/8,::1', { proxies: ['fd00::/8', '::1'] }],
    ['[2001:DB8::1]', { proxies: ['2001:db8::1'] }],
    ['[fd00::]/8', { proxies: ['fd00::/8'] }],
    ['::ffff:10.0.0.1', { proxies: ['::ffff:10.0.0.1'] }],
  ])('reads %j as %j', (value, setting) => {
    expect(load(value).trustProxy).toEqual(setting)
  })

  it.each([
    ['0', /leave it unset when no proxy is in front$/],
    ['101', /101 proxies is not a plausible chain$/],
    ['true', /"true" is neither$/],
    ['-1', /"-1" is neither$/],
    ['1.5', /"1\.5" is neither$/],
    ['loopback', /"loopback" is neither$/],
    ['proxy.internal', /"proxy\.internal" is neither$/],
    ['10.0.0.0/33', /"10\.0\.0\.0\/33" is neither$/],
    ['fd00::/129', /"fd00::\/129" is neither$/],
    ['10.0.0.0/', /"10\.0\.0\.0\/" is neither$/],
    ['10.0.0.0/8/8', /"10\.0\.0\.0\/8\/8" is neither$/],
    ['10.0.0.1, 10.0.0.300', /"10\.0\.0\.300" is neither$/],
    [',', /^TRUST_PROXY: must be the number of proxies in front of the relay \(1 or more\) or a comma list of their IP addresses or CIDRs$/],
  ])('refuses %j with one line naming TRUST_PROXY', (value, message) => {
    let thrown: unknown
    try {
      load(value)
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ConfigError)
    expect((thrown as Error).message).toMatch(/^TRUST_PROXY: must be the number of proxies in front of the relay/)
    expect((thrown as Error).message).toMatch(message)
    expect((thrown as Error).message).not.toContain('\n')
  })

  it('a bad value stops the relay at start with that line', async () => {
    const started = startRelayProcess({ STORE_URL: 'memory://', TRUST_PROXY: 'all' })
    await expect(started).rejects.toThrow(
      'mcp-auth-relay: configuration error: TRUST_PROXY: must be the number of proxies in front of the relay (1 or more) or a comma list of their IP addresses or CIDRs; "all" is neither',
    )
  })
})
