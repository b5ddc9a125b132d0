// One user's concurrent calls share a pooled upstream session. A call that has just refreshed
// must send its fresh token even while another call, still holding the old one, uses the same
// session: otherwise the fresh token seems refused and the user is signed out for nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { withUpstream } from '../../src/relay/upstream-access.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { ACCESS_TOKEN_TTL_SECONDS, waitForExpiry } from './lifecycle-peers.ts'

let as: AuthorizationServer
let docs: McpUpstream
let relay: TestRelay

beforeAll(async () => {
  as = await startAuthorizationServer({ accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS })
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [{ server_id: 'docs', mcp_url: docs.url }],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([docs?.close(), as?.close()])
})

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { opened, open }
}

describe('calls sharing one pooled session', () => {
  it('send each call\'s own token, so a fresh token is never refused for an older one', async () => {
    const caller = { tenant: 'default', userId: 'sharer' }
    const server = relay.deps.config.servers.get('docs')!
    const status = await relay.post('/tools/auth-status', { user_id: 'sharer', server_id: 'docs' })
    expect((await signInThroughBrowser(status.body.servers[0].login_url, 'sharer')).status).toBe(200)
    // The pooled session exists, with the first token.
    expect((await relay.post('/tools/call-tool', { user_id: 'sharer', tool_ref: 'docs::whoami', input: {} })).body.ok).toBe(true)
    const first = (await relay.deps.tokens.get({ ...caller, serverId: 'docs' }))!
    await waitForExpiry()

    // Call X refreshes (the first token has expired) and then waits on the session.
    const xIn = gate()
    const xGo = gate()
    const x = withUpstream(relay.deps, caller, server, async (client, timeoutMs) => {
      xIn.open()
      await xGo.opened
      return client.callTool({ name: 'whoami', arguments: {} }, { timeout: timeoutMs })
    })
    await xIn.opened
    expect(as.refreshCount('sharer')).toBe(1)

    // Call Y began with the first token (read before the refresh; believed good for a while
    // yet) and takes the same session, which now carries Y's token as the pool's latest.
    const yIn = gate()
    const yGo = gate()
    const y = withUpstream(
      relay.deps,
      caller,
      server,
      async () => {
        yIn.open()
        await yGo.opened
        return 'y'
      },
      { token: { ...first, expiresAt: Date.now() + 60_000 } },
    )
    await yIn.opened

    xGo.open()
    const answered = await x
    yGo.open()
    await y
    expect(answered).toMatchObject({ kind: 'ok', value: { structuredContent: { sub: 'sharer' } } })
    expect(await relay.deps.tokens.get({ ...caller, serverId: 'docs' })).toBeDefined()
    expect(as.refreshCount('sharer')).toBe(1)
  })
})
