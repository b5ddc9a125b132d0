import { AsyncLocalStorage } from 'node:async_hooks'
import { isIPv4 } from 'node:net'
import type { FastifyServerOptions } from 'fastify'
import ipaddr from 'ipaddr.js'
import type { TrustProxy } from '../config/load-config.ts'

/**
 * The client's address (DESIGN.md §3 TRUST_PROXY): what rate limits count and audit lines name.
 * Fastify finds it (`request.ip`) from the socket and, for trusted proxies, X-Forwarded-For.
 */

/**
 * Fastify's `trustProxy` for TRUST_PROXY. Fastify 5.12 turns a numeric `trustProxy` into a
 * function that trusts no hop (lib/request.js: hop counting "cannot validate the immediate
 * peer"; FIELD-NOTES.md), so a count goes in as a function of the hop: proxy-addr walks from the
 * socket's peer (hop 0) leftwards through X-Forwarded-For while the hop is trusted, and trusting
 * hops 0 to N-1 stops it at the N-th address from the right. An address list Fastify compiles
 * with proxy-addr itself.
 */
export function fastifyTrustProxy(setting: TrustProxy | undefined): FastifyServerOptions['trustProxy'] {
  if (setting === undefined) return false
  if ('hops' in setting) {
    const { hops } = setting
    return (_address: string, hop: number) => hop < hops
  }
  return [...setting.proxies]
}

/** The address as audit lines show it: an IPv4-mapped IPv6 address as the IPv4 address it is. */
export function clientAddress(ip: string): string {
  if (isIPv4(ip) || !ipaddr.isValid(ip)) return ip
  return ipaddr.process(ip).toString()
}

/**
 * What a rate limit counts: one IPv4 address, or one IPv6 /64. IPv6 subnets are /64 (RFC 4291
 * §2.5.1: 64-bit interface identifiers) and a host takes new addresses in its own at will
 * (temporary addresses, RFC 8981): a limit per IPv6 address would give one client 2^64 buckets.
 */
export function rateLimitKey(ip: string): string {
  if (isIPv4(ip) || !ipaddr.isValid(ip)) return ip
  const address = ipaddr.process(ip)
  if (address.kind() === 'ipv4') return address.toString()
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/64`).toString()}/64`
}

/**
 * The request being handled, for the audit lines written on its behalf deep in the relay (a
 * refresh, a revocation, a sign-in step): set around each route handler (app.ts), read by the
 * logger's mixin (logging.ts), so the relay's functions need no HTTP parameter to log it. The
 * address is worked out only when such a line is written.
 */
export const requestClient = new AsyncLocalStorage<{ readonly ip: string }>()
