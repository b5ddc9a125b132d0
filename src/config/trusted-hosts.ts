import { isIP } from 'node:net'

/** One entry of OAUTH_TRUSTED_HOSTS: a host name or IP (any port), `host:port`, or a CIDR. */
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
      const address = entry.slice(0, slash)
      const prefix = Number(entry.slice(slash + 1))
      const version = isIP(address)
      const max = version === 6 ? 128 : 32
      if (version === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > max) {
        return { problem: `"${entry}" is not a valid CIDR` }
      }
      hosts.push(Object.freeze({ kind: 'cidr', address, prefix, family: version === 6 ? 'ipv6' : 'ipv4' }))
      continue
    }
    // URL parsing normalises IPv6 brackets and rejects what no URL could carry.
    const parsed = URL.canParse(`http://${entry}`) ? new URL(`http://${entry}`) : undefined
    if (!parsed || parsed.pathname !== '/' || parsed.username || entry.includes('@')) {
      return { problem: `"${entry}" is not a host, host:port or CIDR` }
    }
    const port = /:\d+$/.test(entry) ? entry.slice(entry.lastIndexOf(':') + 1) : undefined
    hosts.push(Object.freeze({ kind: 'host', host: parsed.hostname, port }))
  }
  return { hosts }
}
