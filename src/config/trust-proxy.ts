import { isIP } from 'node:net'

/**
 * TRUST_PROXY (DESIGN.md §3): how the relay finds the client's address behind proxies.
 * - `hops`: that many proxies sit in front; the socket's peer is the first, so the client is the
 *   `hops`-th address from the right of X-Forwarded-For (1: its last entry).
 * - `proxies`: addresses and CIDRs of the proxies; X-Forwarded-For is read from the right for as
 *   long as each hop is one of them.
 */
export type TrustProxy = { readonly hops: number } | { readonly proxies: readonly string[] }

const PROBLEM = 'must be the number of proxies in front of the relay (1 or more) or a comma list of their IP addresses or CIDRs'

export function parseTrustProxy(text: string): { setting: TrustProxy } | { problem: string } {
  if (/^\d+$/.test(text)) {
    const hops = Number(text)
    if (hops === 0) return { problem: `${PROBLEM}; leave it unset when no proxy is in front` }
    if (hops > 100) return { problem: `${PROBLEM}; ${hops} proxies is not a plausible chain` }
    return { setting: Object.freeze({ hops }) }
  }
  const proxies: string[] = []
  for (const raw of text.split(',')) {
    const entry = raw.trim().toLowerCase()
    if (!entry) continue
    const [address = '', prefix, ...rest] = entry.split('/')
    const bare = address.replace(/^\[(.*)\]$/, '$1')
    const version = isIP(bare)
    const bits = prefix === undefined ? undefined : Number(prefix)
    const validPrefix = bits === undefined || (/^\d+$/.test(prefix!) && bits <= (version === 6 ? 128 : 32))
    if (version === 0 || rest.length > 0 || !validPrefix) return { problem: `${PROBLEM}; "${entry}" is neither` }
    proxies.push(bits === undefined ? bare : `${bare}/${bits}`)
  }
  if (proxies.length === 0) return { problem: PROBLEM }
  return { setting: Object.freeze({ proxies: Object.freeze(proxies) }) }
}
