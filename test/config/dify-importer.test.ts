// The relay's reading of what Dify's Custom Tool import refuses as a server URL (its SSRF guard,
// langgenius/dify PR #29548): localhost, .local names, and addresses Python's ipaddress calls
// private, loopback or link-local. Python itself judges the addresses here (one python3 run).
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { difyImporterRefusal } from '../../src/config/dify-importer.ts'

// Addresses on both sides of each range; none in a range Python changed between 3.8 and 3.14, so
// any python3 on the machine answers as the one in Dify's image does.
const ADDRESSES = [
  '0.0.0.0', '1.1.1.1', '8.8.8.8', '9.255.255.255', '10.0.0.1', '10.255.255.255', '11.0.0.1',
  '100.64.0.1', '126.255.255.255', '127.0.0.1', '127.255.0.9', '128.0.0.1', '169.254.0.1',
  '169.254.169.254', '169.255.0.1', '172.15.255.255', '172.16.0.1', '172.31.255.255', '172.32.0.1',
  '192.0.2.10', '192.167.255.255', '192.168.0.1', '192.168.255.255', '192.169.0.1', '198.18.0.1',
  '198.51.100.7', '203.0.113.9', '203.0.114.7', '223.255.255.255', '240.0.0.1', '255.255.255.255',
  '::', '::1', '::2', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'febf::1', 'fec0::1', 'ff02::1',
  '2001:db8::1', '2606:4700:4700::1111', '2a00:1450::1', '::ffff:10.0.0.1', '::ffff:8.8.8.8',
  '::ffff:127.0.0.1', '::ffff:169.254.1.1',
]

function pythonRefuses(addresses: readonly string[]): boolean[] {
  const script = [
    'import ipaddress, json, sys',
    'def refused(text):',
    '    ip = ipaddress.ip_address(text)',
    '    return ip.is_private or ip.is_loopback or ip.is_link_local',
    'print(json.dumps([refused(text) for text in json.load(sys.stdin)]))',
  ].join('\n')
  const run = spawnSync('python3', ['-c', script], { input: JSON.stringify(addresses), encoding: 'utf8', timeout: 30_000 })
  if (run.error) throw run.error
  expect(run.status, run.stderr).toBe(0)
  return JSON.parse(run.stdout) as boolean[]
}

describe('difyImporterRefusal', () => {
  it("refuses exactly the IP literals Python's ipaddress calls private, loopback or link-local", () => {
    const python = pythonRefuses(ADDRESSES)
    const relay = ADDRESSES.map((address) => {
      const host = address.includes(':') ? `[${address}]` : address
      return difyImporterRefusal(`http://${host}:8787/`) !== undefined
    })
    expect(Object.fromEntries(ADDRESSES.map((address, index) => [address, relay[index]]))).toEqual(
      Object.fromEntries(ADDRESSES.map((address, index) => [address, python[index]])),
    )
    // Both kinds are in the table.
    expect(python.filter(Boolean).length).toBeGreaterThan(10)
    expect(python.filter((refused) => !refused).length).toBeGreaterThan(10)
  })

  it.each([
    ['http://localhost:8787', 'its host is localhost'],
    ['http://LOCALHOST', 'its host is localhost'],
    ['https://relay.local', 'its host is a .local name'],
    ['http://my.printer.LOCAL:631', 'its host is a .local name'],
  ])('refuses %s by name (%s)', (url, reason) => {
    expect(difyImporterRefusal(url)).toBe(reason)
  })

  it.each(['http://mcp-auth-relay:8787', 'https://relay.example.com/base', 'http://localhost.example.com', 'http://local', 'http://relay.localdomain'])(
    'takes the name %s (a name is not resolved: a Docker service name passes)',
    (url) => {
      expect(difyImporterRefusal(url)).toBeUndefined()
    },
  )
})
