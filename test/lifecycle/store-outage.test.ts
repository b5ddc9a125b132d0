// The shared store goes away mid-run and comes back: while it is gone the tool routes answer 200
// `ok: false` STORE_UNAVAILABLE (Dify drops the body of a 5xx, DESIGN.md §4), reset answers 503 and
// /readyz fails; once it is back the relay serves as before, with no restart.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRedisProcess } from '../store/redis-process.ts'
import { signOutsIn, type RelayProcess } from '../support/relay-process.ts'
import {
  deploymentEnv, expectSignedInAs, signIn, startPeers, startReplica, waitForExpiry, waitUntil, whoami, type Peers,
} from './lifecycle-peers.ts'

describe('the store stopped mid-run (a Redis of this test\'s own)', () => {
  let peers: Peers
  let redis: Awaited<ReturnType<typeof startRedisProcess>>
  let dataDir: string
  let relay: RelayProcess

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'relay-outage-'))
    ;[peers, redis] = await Promise.all([startPeers(), startRedisProcess({ dataDir })])
    relay = await startReplica(deploymentEnv(peers, redis.url))
  }, 120_000)

  afterAll(async () => {
    await relay?.stop()
    await redis?.kill()
    await peers?.close()
    if (dataDir) rmSync(dataDir, { recursive: true, force: true })
  })

  it('answers STORE_UNAVAILABLE while Redis is down (200 ok: false on the tool routes, 503 elsewhere) and serves again once it is back, without a restart', async () => {
    await signIn(relay, 'steady')
    await expectSignedInAs(relay, 'steady')

    await redis.stop()
    for (const [path, body] of [
      ['/tools/call-tool', { user_id: 'steady', tool_ref: 'docs::whoami', input: {} }],
      ['/tools/auth-status', { user_id: 'steady' }],
      ['/tools/list-tools', { user_id: 'steady' }],
    ] as const) {
      const answer = await relay.post(path, body)
      expect(answer.status, path).toBe(200)
      expect(answer.body, path).toMatchObject({ ok: false, error_code: 'STORE_UNAVAILABLE', retry_after_seconds: 10 })
      expect(answer.body.message).not.toMatch(/redis:\/\/|127\.0\.0\.1/)
    }
    const reset = await relay.post('/oauth/reset', { user_id: 'steady' })
    expect(reset.status).toBe(503)
    expect(reset.body.error.code).toBe('STORE_UNAVAILABLE')
    expect((await relay.get('/readyz')).status).toBe(503)
    expect((await relay.get('/healthz')).status).toBe(200)

    await redis.start()
    await waitUntil('/readyz to answer 200 again', async () => (await relay.get('/readyz')).status === 200, 15_000)
    await expectSignedInAs(relay, 'steady')
    expect(relay.exited).toBe(false)
    // Sign-in works again too: the store takes new tickets, flows and tokens.
    await signIn(relay, 'newcomer')
    await expectSignedInAs(relay, 'newcomer')
  }, 120_000)

  it('keeps a refreshed token that arrives while Redis is down, and stores it once Redis is back', async () => {
    const { as } = peers
    await signIn(relay, 'unlucky-timing')
    await waitForExpiry()
    // The refresh is on its way when the store goes: its answer (a rotated refresh token, the
    // only copy) arrives while nothing can be written.
    as.delayTokenEndpoint(1500)
    const call = whoami(relay, 'unlucky-timing')
    await waitUntil('the refresh to reach the authorization server', () => as.heldTokenRequests() === 1)
    await redis.stop()
    await waitUntil('the authorization server to answer the refresh', () => as.refreshCount('unlucky-timing') === 1)
    as.delayTokenEndpoint(undefined)
    await redis.start()

    expect(await call).toMatchObject({ ok: true, result: { structuredContent: { sub: 'unlucky-timing' } } })
    // The stored refresh token is the rotated one: the next refresh works (the used one would
    // have been refused as reuse, revoking the grant).
    await waitForExpiry()
    await expectSignedInAs(relay, 'unlucky-timing')
    expect(as.refreshCount('unlucky-timing')).toBe(2)
    expect(await signOutsIn(relay)).toBe(0)
  }, 120_000)
})
