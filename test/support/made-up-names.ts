// Name resolution a test controls, for the SSRF checks (DESIGN.md §6), and a tripwire that keeps
// every connection this test process opens on loopback. Workplace rule: a test never connects to
// a non-loopback address. The names used are made up (`.example`, RFC 2606), so the OS resolver
// could not answer them anyway; `createResolver` never asks it.
import diagnostics from 'node:diagnostics_channel'
import { BlockList, isIP, type LookupFunction, type Socket } from 'node:net'

/** What a name resolves to: one address always, or one for the checks and another when connecting. */
export type Answer = string | { readonly checked: string; readonly connecting: string }

export interface Resolver {
  readonly lookup: LookupFunction
  /** Every question, in order: the name, whether node:net asked it for a connection, the answer. */
  readonly asked: Array<{ hostname: string; connecting: boolean; address: string }>
}

/**
 * A `lookup` (node's dns.lookup signature) over `names`. A question node:net asks while opening a
 * connection (it always passes `hints` and `family`; the SSRF guard's own check passes neither)
 * gets the `connecting` answer; any other question gets `checked`. So a rebinding name,
 * `{ checked: PUBLIC, connecting: '127.0.0.1' }`, answers a public address to every check and
 * 127.0.0.1 to every connection, however many checks come first, and node:net is never handed
 * the public address. An unknown name fails as dns.lookup does (ENOTFOUND).
 */
export function createResolver(names: Record<string, Answer>): Resolver {
  const asked: Resolver['asked'] = []
  const lookup = ((hostname: string, options: { all?: boolean; hints?: number; family?: unknown }, callback: (...args: unknown[]) => void) => {
    const answer = names[hostname.toLowerCase()]
    const connecting = 'hints' in options || 'family' in options
    if (answer === undefined) {
      const error = Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname })
      process.nextTick(callback, error)
      return
    }
    const address = typeof answer === 'string' ? answer : connecting ? answer.connecting : answer.checked
    asked.push({ hostname, connecting, address })
    const family = isIP(address)
    if (options.all) process.nextTick(callback, null, [{ address, family }])
    else process.nextTick(callback, null, address, family)
  }) as LookupFunction
  return { lookup, asked }
}

/** An address outside loopback for any test to name: TEST-NET-3 (RFC 5737), public by the relay's rule. */
export const PUBLIC_ADDRESS = '203.0.113.7'

const NOT_LOOPBACK = new BlockList()
NOT_LOOPBACK.addRange('0.0.0.0', '126.255.255.255', 'ipv4')
NOT_LOOPBACK.addRange('128.0.0.0', '255.255.255.255', 'ipv4')
NOT_LOOPBACK.addAddress('::', 'ipv6')
NOT_LOOPBACK.addRange('::2', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ipv6')

/**
 * Until `stop()`, every socket this process connects gets node:net's `blockList` (checked after
 * DNS, right before the connect call), blocking every address but 127.0.0.0/8 and ::1: should
 * the relay's own check ever let a private or public address through, the socket fails with
 * ERR_IP_BLOCKED instead of sending anything, the test fails, and `blocked` names the address.
 */
export function allowLoopbackOnly(): { readonly blocked: string[]; stop(): void } {
  const blocked: string[] = []
  const onSocket = (message: unknown) => {
    const socket = (message as { socket: Socket & { blockList?: BlockList } }).socket
    socket.blockList = NOT_LOOPBACK
    // node:net reports a blocked address as an attempt (one address) or a failed attempt (several).
    const note = (address: string) => {
      if (NOT_LOOPBACK.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4')) blocked.push(address)
    }
    socket.on('connectionAttempt', note)
    socket.on('connectionAttemptFailed', note)
  }
  diagnostics.subscribe('net.client.socket', onSocket)
  return { blocked, stop: () => diagnostics.unsubscribe('net.client.socket', onSocket) }
}
