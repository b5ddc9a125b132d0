import { BlockList, isIP } from 'node:net'
import { lookup } from 'node:dns/promises'
import type { TrustedHost } from '../config/load-config.ts'

/**
 * DESIGN.md §6 (SSRF guard): a URL learned from OAuth metadata must be https on a public
 * address, unless its host is one the operator trusts (OAUTH_TRUSTED_HOSTS, or the host:port of a
 * configured mcp_url). An upstream must not be able to point the relay at its own Redis, a
 * loopback service or a cloud metadata address.
 */
export class UrlRefusedError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UrlRefusedError'
  }
}

const NON_PUBLIC = new BlockList()
for (const [address, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3],
] as const) NON_PUBLIC.addSubnet(address, prefix, 'ipv4')
for (const [address, prefix] of [
  ['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['::ffff:0:0', 96],
] as const) NON_PUBLIC.addSubnet(address, prefix, 'ipv6')

export interface UrlGuard {
  /** True when the URL's host is trusted (plain http and private addresses allowed). */
  isTrusted(url: URL): boolean
  /** Resolves when the URL may be fetched; throws UrlRefusedError naming what is wrong. */
  check(url: URL, what: string): Promise<void>
}

export function createUrlGuard(deps: {
  trustedHosts: readonly TrustedHost[]
  configuredUrls: readonly string[]
  resolve?: (hostname: string) => Promise<string[]>
}): UrlGuard {
  const trustedOrigins = new Set(deps.configuredUrls.map((url) => new URL(url).host.toLowerCase()))
  const trustedNames = deps.trustedHosts.filter((entry) => entry.kind === 'host')
  const trustedRanges = new BlockList()
  for (const entry of deps.trustedHosts) {
    if (entry.kind === 'cidr') trustedRanges.addSubnet(entry.address, entry.prefix, entry.family)
  }
  const resolve =
    deps.resolve ?? (async (hostname: string) => (await lookup(hostname, { all: true })).map((found) => found.address))

  function isTrusted(url: URL): boolean {
    const hostname = bareHostname(url)
    const port = url.port || (url.protocol === 'https:' ? '443' : '80')
    if (trustedOrigins.has(url.host.toLowerCase())) return true
    if (trustedNames.some((entry) => entry.host === hostname && (entry.port === undefined || entry.port === port))) return true
    const family = isIP(hostname)
    return family !== 0 && trustedRanges.check(hostname, family === 6 ? 'ipv6' : 'ipv4')
  }

  async function check(url: URL, what: string): Promise<void> {
    if (isTrusted(url)) return
    if (url.protocol !== 'https:') {
      throw new UrlRefusedError(`${what} ${url.origin} is not https and its host is not in OAUTH_TRUSTED_HOSTS`)
    }
    const hostname = bareHostname(url)
    const addresses = isIP(hostname) ? [hostname] : await resolve(hostname).catch(() => [])
    if (addresses.length === 0) throw new UrlRefusedError(`${what} ${url.origin} does not resolve`)
    for (const address of addresses) {
      if (NON_PUBLIC.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')) {
        throw new UrlRefusedError(
          `${what} ${url.origin} points to a private or loopback address and its host is not in OAUTH_TRUSTED_HOSTS`,
        )
      }
    }
  }

  return { isTrusted, check }
}

function bareHostname(url: URL): string {
  return url.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1')
}

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>

/**
 * OAuth metadata, registration and token responses are small JSON documents. An answer's size
 * is otherwise bounded by nothing but the time limit: a metadata URL (which an upstream chooses)
 * streaming without end had the relay read half a gigabyte in two seconds.
 */
const MAX_OAUTH_RESPONSE_BYTES = 1024 * 1024

/**
 * A fetch for OAuth metadata, registration and token requests: every URL passes the guard,
 * redirects are never followed automatically (the SDK follows same-origin ones itself, through
 * this same fetch), every request has a time limit and every answer a size limit.
 */
export function createGuardedFetch(deps: { guard: UrlGuard; timeoutMs: number; fetch?: FetchLike }): FetchLike {
  const baseFetch = deps.fetch ?? fetch
  return async (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input))
    await deps.guard.check(url, 'OAuth URL')
    const signal = init?.signal
      ? AbortSignal.any([init.signal, AbortSignal.timeout(deps.timeoutMs)])
      : AbortSignal.timeout(deps.timeoutMs)
    return limitResponse(await baseFetch(input, { ...init, redirect: 'manual', signal }), url)
  }
}

/** The response with its body counted against MAX_OAUTH_RESPONSE_BYTES; past it, reading fails with UrlRefusedError. */
function limitResponse(response: Response, url: URL): Response {
  const body = response.body
  if (!body) return response
  const tooLarge = () => new UrlRefusedError(`the answer from ${url.origin} is larger than 1 MiB`)
  if (Number(response.headers.get('content-length')) > MAX_OAUTH_RESPONSE_BYTES) {
    void body.cancel()
    throw tooLarge()
  }
  const reader = body.getReader()
  let seen = 0
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read()
      if (done) {
        controller.close()
        return
      }
      seen += value.byteLength
      if (seen > MAX_OAUTH_RESPONSE_BYTES) {
        controller.error(tooLarge())
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
