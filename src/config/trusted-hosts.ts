import { isIP } from 'node:net'

/**
 * One entry of OAUTH_TRUSTED_HOSTS: a host name or IP (any port), `host:port`, or a CIDR. `host` is
 * as URL.hostname has it, without the brackets of an IPv6 literal (`::1`).
 */
export type TrustedHost =
  | { readonly kind: 'host'; readonly host: string; readonly port: string | undefined }
  | { readonly kind: 'cidr'; readonly address: string; readonly prefix: number; readonly family: 'ipv4' | 'ipv6' }

export function parseTrustedHosts(csv: string): { hosts: TrustedHost[] } | { problem: string } {
  const hosts: TrustedHost[] = []
  for (const raw of csv.split(',')) {
    const entry = raw.trim().toLowerCase()
    if (!entry) continue
    const slash = entry.indexOf('/')
    if (slash !== -1) {
      const address = entry.slice(0, slash).replace(/^\[(.*)\]$/, '$1')
      const prefix = Number(entry.slice(slash + 1))
      const version = isIP(address)
      const max = version === 6 ? 128 : 32
      if (version === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        return { problem: `"${entry}" is not a valid CIDR` }
      }
      hosts.push(Object.freeze({ kind: 'cidr', address, prefix, family: version === 6 ? 'ipv6' : 'ipv4' }))
      continue
    }
    // DESIGN.md §3: IPv6 literals bare (`::1`, any port) or in brackets (`[::1]`, `[::1]:8443`).
    // URL parsing normalises them (and IPv4 forms such as 127.1) the way request URLs are, and
    // rejects what no URL could carry.
    const authority = isIP(entry) === 6 ? `[${entry}]` : entry
    const parsed = URL.canParse(`http://${authority}`) ? new URL(`http://${authority}`) : undefined
    if (!parsed || parsed.pathname !== '/' || parsed.username || entry.includes('@')) {
      return { problem: `"${entry}" is not a host, host:port, [IPv6]:port or CIDR` }
    }
    // URL drops a default port (`host:80`) but that entry still names one port.
    const port = /:\d+$/.test(authority) ? parsed.port || '80' : undefined
    hosts.push(Object.freeze({ kind: 'host', host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), port }))
  }
  return { hosts }
}
