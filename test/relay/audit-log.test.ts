// The audit lines of DESIGN.md §6 this relay writes for refresh, reset, revocation, step-up and
// admin actions (issue 10 item 6, issue 12 item 5): each action writes its event once, with
// tenant, userId and serverId, and no line carries a token, code, secret or key.
import { Writable } from 'node:stream'
import * as oidc from 'openid-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createClientConfiguration } from '../../src/oauth/client-config.ts'
import { resolveServerAuth } from '../../src/relay/sign-in-link.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, TEST_API_KEY, type TestRelay } from '../support/relay.ts'

const ADMIN_KEY = 'admin-key-0123456789abcdef'

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
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, LOG_LEVEL: 'info', RELAY_ADMIN_KEYS: ADMIN_KEY },
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

/** The audit lines `action` wrote, by event. */
async function auditOf(action: () => Promise<unknown>): Promise<Array<Record<string, any>>> {
  const from = lines.length
  await action()
  return lines
    .slice(from)
    .map((line) => JSON.parse(line) as Record<string, any>)
    .filter((record) => record.event !== undefined)
}

async function signIn(userId: string) {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs' })
  const page = await signInThroughBrowser(status.body.servers[0].login_url, userId)
  expect(page.status, page.html).toBe(200)
}

const whoami = (userId: string) => relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })
const who = (userId: string) => ({ tenant: 'default', userId, serverId: 'docs' })

describe('audit lines', () => {
  it('refresh.ok, refresh.failed, refresh.refused: one line each, naming whose token', async () => {
    await signIn('ann')
    clock += 10 * 60_000 // past the 60 s access token: the next call refreshes first
    expect(await auditOf(() => whoami('ann'))).toEqual([expect.objectContaining({ event: 'refresh.ok', ...who('ann') })])

    clock += 10 * 60_000
    as.failTokenEndpoint(503)
    try {
      expect(await auditOf(() => whoami('ann'))).toEqual([expect.objectContaining({ event: 'refresh.failed', ...who('ann') })])
    } finally {
      as.failTokenEndpoint(undefined)
    }

    // The grant revoked behind the relay's back: the next refresh is refused for good.
    const stored = (await relay.deps.tokens.get(who('ann')))!
    const { auth, client } = await resolveServerAuth(relay.deps, relay.deps.config.servers.get('docs')!)
    await oidc.tokenRevocation(createClientConfiguration(relay.deps.oauth, auth, client), stored.refreshToken!)
    expect(await auditOf(() => whoami('ann'))).toEqual([
      expect.objectContaining({ event: 'refresh.refused', ...who('ann'), reason: 'invalid_grant' }),
    ])
  })

  it('step_up: one line when a larger scope is asked for', async () => {
    await signIn('ben')
    docs.setScopesRequiredFor('echo', ['docs:a'])
    try {
      const audit = await auditOf(() => relay.post('/tools/call-tool', { user_id: 'ben', tool_ref: 'docs::echo', input: { text: 'hi' } }))
      expect(audit).toEqual([expect.objectContaining({ event: 'step_up', ...who('ben'), outcome: 'link', scope: expect.stringContaining('docs:a') })])
    } finally {
      docs.setScopesRequiredFor('echo', [])
    }
  })

  it('reset and revocation: one line each', async () => {
    const audit = await auditOf(() => relay.post('/oauth/reset', { user_id: 'ben', server_id: 'docs' }))
    expect(audit).toEqual([
      expect.objectContaining({ event: 'reset', ...who('ben'), deleted: true }),
      expect.objectContaining({ event: 'revocation', ...who('ben'), revoked: true }),
    ])
  })

  it('admin.connections and admin.reset: one line each, naming the filters and which admin key', async () => {
    await signIn('cat')
    const listed = await auditOf(() =>
      fetch(`${relay.url}/admin/connections?user_id=cat`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } }).then((answer) => answer.text()),
    )
    expect(listed).toEqual([expect.objectContaining({ event: 'admin.connections', tenant: null, userId: 'cat', serverId: null, adminKey: 1, count: 1 })])

    const reset = await auditOf(() =>
      fetch(`${relay.url}/admin/reset`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant: 'default', user_id: 'cat' }),
      }).then((answer) => answer.text()),
    )
    expect(reset).toEqual([
      expect.objectContaining({ event: 'admin.reset', tenant: 'default', userId: 'cat', serverId: null, adminKey: 1 }),
      expect.objectContaining({ event: 'reset', ...who('cat'), deleted: true }),
      expect.objectContaining({ event: 'revocation', ...who('cat'), revoked: true }),
    ])
  })

  it('carry no token, code, state, verifier, client secret or key', () => {
    const text = lines.join('\n')
    expect(as.issuedSecrets.length).toBeGreaterThan(10)
    for (const secret of [...as.issuedSecrets.map((issued) => issued.value), TEST_API_KEY, ADMIN_KEY]) expect(text).not.toContain(secret)
    for (const line of lines.map((line) => JSON.parse(line) as Record<string, any>).filter((record) => record.event !== undefined)) {
      expect(Object.keys(line)).toEqual(expect.arrayContaining(['event', 'tenant', 'userId', 'serverId']))
    }
  })
})
