import { lookup as dnsLookup } from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'
import ipaddr from 'ipaddr.js'
import type { TrustedHost } from '../config/load-config.ts'
import { feedShape, JsonShape, type ShapeLimits } from '../mcp/json-shape.ts'

/**
 * DESIGN.md §6 (SSRF guard): a URL learned from OAuth metadata must be https on a public
 * address, unless its host is one the operator trusts (OAUTH_TRUSTED_HOSTS, or the origin of a
 * configured mcp_url). An upstream must not be able to point the relay at its own Redis, a
 * loopback service or a cloud metadata address.
 */
export class UrlRefusedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UrlRefusedError'
  }
}

/** The UrlRefusedError in `error` or its causes (a refused connection reaches callers as fetch's TypeError). */
export function findRefusal(error: unknown): UrlRefusedError | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    if (cause instanceof UrlRefusedError) return cause
  }
  return undefined
}

const NON_PUBLIC = new BlockList()
for (const [address, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3],
] as const) NON_PUBLIC.addSubnet(address, prefix, 'ipv4')
// No rule for IPv4-mapped addresses (::ffff:0:0/96): BlockList checks ::ffff:a.b.c.d against the
// IPv4 rules above by itself, and also checks every IPv4 address against such a rule, so that
// rule made every public IPv4 address "private". The other forms that carry an IPv4 address are
// judged by it (embeddedIPv4 below), except 64:ff9b:1::/48: RFC 8215 reserves it for translation
// inside one network, which picks where the IPv4 address sits (any RFC 6052 §2.2 prefix length
// from /48 to /96) and may map it to private addresses, so no reading of it can be called public.
for (const [address, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8], ['64:ff9b:1::', 48],
] as const) NON_PUBLIC.addSubnet(address, prefix, 'ipv6')

/**
 * IPv6 forms whose packets reach an IPv4 address written inside them, and the byte it starts at:
 * IPv4-mapped (RFC 4291 §2.5.5.2), IPv4-compatible (§2.5.5.1, deprecated, but `::127.0.0.1`
 * still parses), NAT64's well-known prefix (RFC 6052 §2.1, the last 32 bits at /96) and 6to4
 * (RFC 3056 §2, bits 16-47). `::` and `::1` fall in ::/96 too; NON_PUBLIC refuses them first.
 */
const IPV4_CARRIERS = (
  [['::ffff:0:0/96', 12], ['::/96', 12], ['64:ff9b::/96', 12], ['2002::/16', 2]] as const
).map(([cidr, at]) => ({ range: ipaddr.IPv6.parseCIDR(cidr), at }))

/** The IPv4 address an IPv6 address carries (IPV4_CARRIERS), if it is one of those forms. */
function embeddedIPv4(address: string): string | undefined {
  if (!ipaddr.IPv6.isValid(address)) return undefined
  const parsed = ipaddr.IPv6.parse(address)
  const carrier = IPV4_CARRIERS.find(({ range }) => parsed.match(range))
  return carrier && parsed.toByteArray().slice(carrier.at, carrier.at + 4).join('.')
}

export interface UrlGuard {
  /** True when the URL's host is trusted (plain http and private addresses allowed). */
  isTrusted(url: URL): boolean
  /** Resolves when the URL may be fetched; throws UrlRefusedError naming what is wrong. */
  check(url: URL, what: string): Promise<void>
  /**
   * The `lookup` for a new connection to `url`'s host (node:net `lookup` option), which fails the
   * connection with UrlRefusedError when the address it would connect to breaks the rule; undefined
   * when any address will do (a trusted host, a default lookup). Also answers for an IP literal,
   * which node:net does not look up: the caller asks it by hand before connecting.
   */
  connectLookup(url: URL): LookupFunction | undefined
}

/**
 * The one rule, applied twice with the same trust: `check` when a URL is learned or about to be
 * fetched (https, names a public address), `connectLookup` at the moment a connection is opened
 * (the address actually connected to is public). The second stops DNS rebinding: a name that
 * resolves to a public address for the check and to 127.0.0.1 a moment later, when connecting.
 * Both resolve through `lookup` (default node's dns.lookup; tests give a resolver they control).
 */
export function createUrlGuard(deps: {
  trustedHosts: readonly TrustedHost[]
  configuredUrls: readonly string[]
  lookup?: LookupFunction
}): UrlGuard {
  // DESIGN.md §6: a configured URL vouches for its origin (scheme, host and port), so an
  // `https://host/mcp` entry does not make plain `http://host/` trusted.
  const trustedOrigins = new Set(deps.configuredUrls.map((url) => new URL(url).origin))
  const trustedNames = deps.trustedHosts.filter((entry) => entry.kind === 'host')
  const trustedRanges = new BlockList()
  for (const entry of deps.trustedHosts) {
    if (entry.kind === 'cidr') trustedRanges.addSubnet(entry.address, entry.prefix, entry.family)
  }
  const lookup = deps.lookup ?? (dnsLookup as LookupFunction)

  function isTrusted(url: URL): boolean {
    const hostname = bareHostname(url)
    const port = url.port || (url.protocol === 'https:' ? '443' : '80')
    if (trustedOrigins.has(url.origin)) return true
    if (trustedNames.some((entry) => entry.host === hostname && (entry.port === undefined || entry.port === port))) return true
    return isIP(hostname) !== 0 && isTrustedAddress(hostname)
  }

  /** Inside a CIDR of OAUTH_TRUSTED_HOSTS, itself or by the IPv4 address it carries. */
  function isTrustedAddress(address: string): boolean {
    if (trustedRanges.check(address, family(address))) return true
    const carried = embeddedIPv4(address)
    return carried !== undefined && trustedRanges.check(carried, 'ipv4')
  }

  /** Trusted, or public: itself, and the IPv4 address it carries. */
  function isAllowedAddress(address: string): boolean {
    if (isTrustedAddress(address)) return true
    if (NON_PUBLIC.check(address, family(address))) return false
    const carried = embeddedIPv4(address)
    return carried === undefined || !NON_PUBLIC.check(carried, 'ipv4')
  }

  async function check(url: URL, what: string): Promise<void> {
    if (isTrusted(url)) return
    if (url.protocol !== 'https:') {
      throw new UrlRefusedError(`${what} ${url.origin} is not https and its host is not in OAUTH_TRUSTED_HOSTS`)
    }
    const addresses = await resolveAll(lookup, bareHostname(url)).catch(() => [])
    if (addresses.length === 0) throw new UrlRefusedError(`${what} ${url.origin} does not resolve`)
    if (!addresses.every(isAllowedAddress)) {
      throw new UrlRefusedError(
        `${what} ${url.origin} points to a private or loopback address and its host is not in OAUTH_TRUSTED_HOSTS`,
      )
    }
  }

  function connectLookup(url: URL): LookupFunction | undefined {
    if (isTrusted(url)) return isIP(bareHostname(url)) ? undefined : deps.lookup
    const expected = bareHostname(url)
    return (hostname, options, callback) => {
      // A different name is the proxy of the environment (NODE_USE_ENV_PROXY), which the
      // operator chose; the proxy resolves the URL's host itself.
      if (hostname.toLowerCase() !== expected) return lookup(hostname, options, callback)
      const answer = (error: NodeJS.ErrnoException | null, found: string | Array<{ address: string; family: number }>, version?: number) => {
        if (error) return callback(error, found, version)
        const refused = (typeof found === 'string' ? [found] : found.map((entry) => entry.address)).find((address) => !isAllowedAddress(address))
        if (refused === undefined) return callback(null, found, version)
        // Public when checked, private now: DNS rebinding, or a name that was never checked.
        callback(
          new UrlRefusedError(
            `${url.origin} resolved to ${refused}, a private or loopback address, when connecting, and its host is not in OAUTH_TRUSTED_HOSTS`,
          ),
          found,
          version,
        )
      }
      const literal = isIP(hostname)
      if (literal !== 0) {
        const found = options.all ? [{ address: hostname, family: literal }] : hostname
        process.nextTick(answer, null, found, literal)
        return
      }
      lookup(hostname, options, answer)
    }
  }

  return { isTrusted, check, connectLookup }
}

function bareHostname(url: URL): string {
  return url.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1')
}

function family(address: string): 'ipv4' | 'ipv6' {
  return isIP(address) === 6 ? 'ipv6' : 'ipv4'
}

function resolveAll(lookup: LookupFunction, hostname: string): Promise<string[]> {
  if (isIP(hostname)) return Promise.resolve([hostname])
  return new Promise((resolve, reject) => {
    lookup(hostname, { all: true }, (error, found) => {
      if (error) reject(error)
      else resolve(typeof found === 'string' ? [found] : found.map((entry) => entry.address))
    })
  })
}

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>

/**
 * OAuth metadata, registration and token responses are small JSON documents. An answer's size
 * is otherwise bounded by nothing but the time limit: a metadata URL (which an upstream chooses)
 * streaming without end had the relay read half a gigabyte in two seconds. Its shape is bounded
 * too (mcp/json-shape.ts): a metadata document padded with 600 KB of `[{},{},…]` held the event
 * loop for 400 ms of CPU in one sign-in, and a kept document is read back from the store on later
 * requests. Real ones hold a few hundred items.
 */
const MAX_OAUTH_RESPONSE_BYTES = 1024 * 1024
const MAX_OAUTH_RESPONSE_SHAPE: ShapeLimits = { maxDepth: 32, maxItems: 10_000 }

/**
 * A fetch for OAuth metadata, registration, token and revocation requests: every URL passes the
 * guard, redirects are never followed automatically (the SDK follows same-origin ones itself,
 * through this same fetch), every request has a time limit and every answer a size limit.
 * `fetch` must check the address it connects to with `guard.connectLookup` (mcp/http-fetch.ts
 * does): the check here runs before the connection, on what the name resolved to then.
 */
export function createGuardedFetch(deps: { guard: UrlGuard; timeoutMs: number; fetch: FetchLike }): FetchLike {
  return async (input, init) => {
    const url = new URL(input)
    await deps.guard.check(url, 'OAuth URL')
    const signal = init?.signal
      ? AbortSignal.any([init.signal, AbortSignal.timeout(deps.timeoutMs)])
      : AbortSignal.timeout(deps.timeoutMs)
    let response: Response
    try {
      response = await deps.fetch(input, { ...init, redirect: 'manual', signal })
    } catch (error) {
      // A connection refused by the connect-time check reads as the check's own refusal.
      throw findRefusal(error) ?? error
    }
    return limitResponse(response, url)
  }
}

/**
 * The response with its body counted against MAX_OAUTH_RESPONSE_BYTES and its JSON's shape against
 * MAX_OAUTH_RESPONSE_SHAPE; past either, reading fails with UrlRefusedError.
 */
function limitResponse(response: Response, url: URL): Response {
  const body = response.body
  if (!body) return response
  const refused = (problem: string) => new UrlRefusedError(`the answer from ${url.origin} ${problem}`)
  if (Number(response.headers.get('content-length')) > MAX_OAUTH_RESPONSE_BYTES) {
    void body.cancel()
    throw refused('is larger than 1 MiB')
  }
  const reader = body.getReader()
  const shape = new JsonShape(MAX_OAUTH_RESPONSE_SHAPE)
  let seen = 0
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read()
      if (done) {
        controller.close()
        return
      }
      seen += value.byteLength
      const problem = seen > MAX_OAUTH_RESPONSE_BYTES ? 'is larger than 1 MiB' : feedShape(shape, value)
      if (problem) {
        controller.error(refused(problem))
        await reader.cancel()
        return
      }
      controller.enqueue(value)
    },
    cancel(reason) {
      return reader.cancel(reason)
    },
  })
  return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers })
}
