// DESIGN.md §6 (audit) and §3 TRUST_PROXY: every audit line written on behalf of a request names
// the client's address (clientAddress) as TRUST_PROXY finds it: the browser's on the sign-in
// steps, Dify's on a refresh, step-up, reset and revocation, the operator's on an admin action.
// The relay runs behind one "proxy" (TRUST_PROXY=1; the test's sockets on 127.0.0.1), and each
// party sends the X-Forwarded-For that proxy would add.
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, followToCallback, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, TEST_API_KEY, type TestRelay } from '../support/relay.ts'

const ADMIN_KEY = 'admin-key-0123456789abcdef'
const BROWSER = '198.51.100.23'
const DIFY = '198.51.100.99'

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay
let clock = Date.now()
const lines: string[] = []

beforeAll(async () => {
  as = await startAuthorizationServer({ scopes: ['mcp:read', 'mcp:write', 'docs:a', 'offline_access'] })
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', mcp_url: docs.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, LOG_LEVEL: 'info', RELAY_ADMIN_KEYS: ADMIN_KEY, TRUST_PROXY: '1' },
    now: () => clock,
    logStream: new Writable({
      write(chunk, _encoding, callback) {
        lines.push(...String(chunk).split('\n').filter(Boolean))
        callback()
      },
    }),
  })
}, 30_000)

afterAll(async () => {
  await relay?.close()
  await docs?.close()
  await as?.close()
})

/** The audit lines `action` wrote. */
async function auditOf(action: () => Promise<unknown>): Promise<Array<Record<string, any>>> {
  const from = lines.length
  await action()
  return lines
    .slice(from)
    .map((line) => JSON.parse(line) as Record<string, any>)
    .filter((record) => record.event !== undefined)
}

/** A JSON request from `forwardedFor` through the proxy, with the tool key or the admin key. */
async function send(path: string, forwardedFor: string, body?: unknown, key = TEST_API_KEY): Promise<any> {
  const response = await fetch(`${relay.url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': forwardedFor, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(20_000),
  })
  expect(response.status).toBe(200)
  return response.json()
}

async function loginUrl(userId: string): Promise<string> {
  const status = await send('/tools/auth-status', DIFY, { user_id: userId, server_id: 'docs' })
  return status.servers[0].login_url
}

const who = (userId: string) => ({ tenant: 'default', userId, serverId: 'docs' })

describe('audit lines carry the client address', () => {
  it("sign_in.started and sign_in.completed: the browser's; what the browser itself put in X-Forwarded-For is not believed", async () => {
    const link = await loginUrl('ann')
    const jar = createCookieJar()
    let callback = ''
    const started = await auditOf(async () => {
      callback = await followToCallback(link, 'ann', { jar, headers: { 'x-forwarded-for': `203.0.113.1, ${BROWSER}` } })
    })
    expect(started).toEqual([expect.objectContaining({ event: 'sign_in.started', ...who('ann'), clientAddress: BROWSER })])
    const completed = await auditOf(async () => {
      const page = await fetch(callback, { headers: { cookie: jar.header(new URL(callback)) ?? '', 'x-forwarded-for': BROWSER }, redirect: 'manual' })
      expect(page.status, await page.text()).toBe(200)
    })
    expect(completed).toEqual([expect.objectContaining({ event: 'sign_in.completed', ...who('ann'), clientAddress: BROWSER })])
  })

  it("sign_in.refused: the address of the browser that posted without the page's token", async () => {
    const link = await loginUrl('ben')
    const refused = await auditOf(async () => {
      const response = await fetch(link, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-forwarded-for': '203.0.113.66' }, body: 'csrf=forged' })
      expect(response.status).toBe(403)
    })
    expect(refused).toEqual([expect.objectContaining({ event: 'sign_in.refused', reason: 'csrf', ...who('ben'), clientAddress: '203.0.113.66' })])
    // The refused POST used nothing up: the link still signs in.
    expect((await signInThroughBrowser(link, 'ben', { headers: { 'x-forwarded-for': BROWSER } })).status).toBe(200)
  })

  it("refresh.ok and step_up: the address of the tool call's caller", async () => {
    clock += 10 * 60_000 // past the 60 s access token: the next call refreshes first
    const refreshed = await auditOf(() => send('/tools/call-tool', DIFY, { user_id: 'ann', tool_ref: 'docs::whoami', input: {} }))
    expect(refreshed).toEqual([expect.objectContaining({ event: 'refresh.ok', ...who('ann'), clientAddress: DIFY })])

    docs.setScopesRequiredFor('echo', ['docs:a'])
    try {
      const stepUp = await auditOf(() => send('/tools/call-tool', '2001:db8:5::17', { user_id: 'ann', tool_ref: 'docs::echo', input: { text: 'hi' } }))
      expect(stepUp).toEqual([expect.objectContaining({ event: 'step_up', ...who('ann'), outcome: 'link', clientAddress: '2001:db8:5::17' })])
    } finally {
      docs.setScopesRequiredFor('echo', [])
    }
  })

  it('reset and revocation: the caller of /oauth/reset, an IPv4-mapped address written as IPv4', async () => {
    const audit = await auditOf(() => send('/oauth/reset', '::ffff:198.51.100.42', { user_id: 'ann', server_id: 'docs' }))
    expect(audit).toEqual([
      expect.objectContaining({ event: 'reset', ...who('ann'), deleted: true, clientAddress: '198.51.100.42' }),
      expect.objectContaining({ event: 'revocation', ...who('ann'), revoked: true, clientAddress: '198.51.100.42' }),
    ])
  })

  it("admin.connections and admin.reset: the operator's", async () => {
    const listed = await auditOf(() => send('/admin/connections?user_id=ben', '192.0.2.200', undefined, ADMIN_KEY))
    expect(listed).toEqual([expect.objectContaining({ event: 'admin.connections', adminKey: 1, clientAddress: '192.0.2.200' })])
    const reset = await auditOf(() => send('/admin/reset', '192.0.2.200', { tenant: 'default', user_id: 'ben' }, ADMIN_KEY))
    expect(reset.map((line) => [line.event, line.clientAddress])).toEqual([
      ['admin.reset', '192.0.2.200'],
      ['reset', '192.0.2.200'],
      ['revocation', '192.0.2.200'],
    ])
  })

  it('every audit line of this run names a client address', () => {
    const audit = lines.map((line) => JSON.parse(line) as Record<string, any>).filter((record) => record.event !== undefined)
    expect(audit.length).toBeGreaterThan(8)
    for (const line of audit) expect(line.clientAddress, line.event).toMatch(/^[\d.:a-f]+$/)
    // Only audit lines: the request lines keep their own remoteAddress.
    const requestLine = lines.map((line) => JSON.parse(line) as Record<string, any>).find((record) => record.msg === 'request completed')
    expect(requestLine).toMatchObject({ req: { remoteAddress: expect.any(String) } })
    expect(requestLine?.clientAddress).toBeUndefined()
  })
})
