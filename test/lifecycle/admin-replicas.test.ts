// Two relay processes on one Redis (issue 12 item 5): both list the same connections, whichever
// replica signed the user in or reset them, including tokens stored before the index existed
// (a relay upgraded in place), which the first listing adds to the index.
import { createClient } from '@keyv/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isolatedStore, type IsolatedStore } from '../support/isolated-stores.ts'
import type { RelayProcess } from '../support/relay-process.ts'
import { deploymentEnv, signIn, startPeers, startReplica, type Peers } from './lifecycle-peers.ts'

const ADMIN_KEY = 'admin-key-0123456789abcdef'

describe('admin connections across two replicas on Redis', () => {
  let peers: Peers
  let store: IsolatedStore
  let a: RelayProcess
  let b: RelayProcess | undefined

  beforeAll(async () => {
    ;[peers, store] = await Promise.all([startPeers(), isolatedStore('redis')])
    a = await startReplica(deploymentEnv(peers, store.url, { RELAY_ADMIN_KEYS: ADMIN_KEY }))
  }, 120_000)

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    await Promise.all([peers?.close(), store?.release()])
  })

  async function users(relay: RelayProcess): Promise<string[]> {
    const answer = await fetch(`${relay.url}/admin/connections`, { headers: { authorization: `Bearer ${ADMIN_KEY}` }, signal: AbortSignal.timeout(10_000) })
    expect(answer.status).toBe(200)
    const body = (await answer.json()) as { connections: Array<{ tenant: string; user_id: string; server_id: string }>; next_cursor: string | null }
    expect(body.next_cursor).toBeNull()
    return body.connections.map((row) => `${row.tenant}/${row.user_id}/${row.server_id}`)
  }

  it('both list what either stored or removed', async () => {
    await signIn(a, 'u1')
    await signIn(a, 'u2')
    // As if u1 and u2 had signed in before this version: no index entries for them.
    const redis = createClient({ url: store.url })
    await redis.connect()
    expect(await redis.zCard('relay/index:tokens')).toBe(2)
    await redis.del('relay/index:tokens')
    await redis.close()

    b = await startReplica({ ...deploymentEnv(peers, store.url, { RELAY_ADMIN_KEYS: ADMIN_KEY }), PUBLIC_BASE_URL: a.url })
    await signIn(a, 'u3', 'u3', { reach: b })
    const everyone = ['default/u1/docs', 'default/u2/docs', 'default/u3/docs']
    expect(await users(b)).toEqual(everyone)
    expect(await users(a)).toEqual(everyone)

    const reset = await fetch(`${b.url}/admin/reset`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'default', user_id: 'u2' }),
    })
    expect(await reset.json()).toMatchObject({ deleted_server_ids: ['docs'], servers: [{ server_id: 'docs', revoked: true }] })
    expect(await users(a)).toEqual(['default/u1/docs', 'default/u3/docs'])

    expect((await a.post('/oauth/reset', { user_id: 'u1' })).body.deleted_server_ids).toEqual(['docs'])
    expect(await users(b)).toEqual(['default/u3/docs'])
  }, 120_000)
})
