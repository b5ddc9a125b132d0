import { BlockList, isIP } from 'node:net'

/**
 * Dify's Custom Tool importer refuses an OpenAPI document whose `servers[].url` points at a
 * "private or local network address" (its SSRF guard, langgenius/dify PR #29548, merged
 * 2025-12-12: api/core/tools/utils/parser.py checks each server URL through
 * api/core/helper/ssrf_proxy.py, raising ToolSSRFError). Its tests refuse `localhost`, a name
 * ending in `.local`, and IP literals that Python's `ipaddress` calls `is_private`,
 * `is_loopback` or `is_link_local`; a plain name (a Docker service such as `mcp-auth-relay`) is
 * not refused by the importer. This mirrors that rule so the relay can say so at start-up.
 */

// Python's ipaddress `_private_networks` (3.12.4+, 3.13), which also hold its loopback and
// link-local ranges. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are judged by their IPv4
// address, as Python does; BlockList checks them against the IPv4 rules by itself.
const IPV4_PRIVATE: ReadonlyArray<[string, number]> = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['240.0.0.0', 4], ['255.255.255.255', 32],
]
const IPV6_PRIVATE: ReadonlyArray<[string, number]> = [
  ['::1', 128], ['::', 128], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['2002::', 16], ['3fff::', 20], ['fc00::', 7], ['fe80::', 10],
]
// Carved out of the ranges above: globally reachable (Python's `_private_networks_exceptions`).
const EXCEPTIONS: ReadonlyArray<[string, number, 'ipv4' | 'ipv6']> = [
  ['192.0.0.9', 32, 'ipv4'], ['192.0.0.10', 32, 'ipv4'], ['2001:1::1', 128, 'ipv6'], ['2001:1::2', 128, 'ipv6'],
  ['2001:3::', 32, 'ipv6'], ['2001:4:112::', 48, 'ipv6'], ['2001:20::', 28, 'ipv6'], ['2001:30::', 28, 'ipv6'],
]

const PRIVATE = new BlockList()
for (const [address, prefix] of IPV4_PRIVATE) PRIVATE.addSubnet(address, prefix, 'ipv4')
for (const [address, prefix] of IPV6_PRIVATE) PRIVATE.addSubnet(address, prefix, 'ipv6')
const GLOBAL = new BlockList()
for (const [address, prefix, family] of EXCEPTIONS) GLOBAL.addSubnet(address, prefix, family)

/** Why Dify's importer would refuse `url` as a server URL, or undefined when it would take it. */
export function difyImporterRefusal(url: string): string | undefined {
  const hostname = new URL(url).hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (hostname === 'localhost') return 'its host is localhost'
  if (hostname.endsWith('.local')) return 'its host is a .local name'
  const version = isIP(hostname)
  if (version === 0) return undefined
  const family = version === 6 ? 'ipv6' : 'ipv4'
  if (PRIVATE.check(hostname, family) && !GLOBAL.check(hostname, family)) return `${hostname} is a private, loopback or link-local address`
  return undefined
}
