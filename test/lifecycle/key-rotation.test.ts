// RELAY_ENCRYPTION_KEY rotation across restarts of a relay process on Redis: tokens sealed with
// the old key keep working after `new,old`, move to the new key on their next write, and a token
// no configured key opens reads as "not signed in" rather than breaking a request.
import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isolatedStore, readRawToken, type IsolatedStore } from '../support/isolated-stores.ts'
import { signOutsIn, type RelayProcess } from '../support/relay-process.ts'
import {
  deploymentEnv, docsTokenKey, expectSignedInAs, KEY_1, KEY_2, signIn, startPeers, startReplica, waitForExpiry, whoami, type Peers,
} from './lifecycle-peers.ts'

/** The key id a sealed value names: `v1.<first 8 bytes of SHA-256 of the key, hex>.` (store/seal.ts). */
function sealPrefix(base64Key: string): string {
  return `v1.${createHash('sha256').update(Buffer.from(base64Key, 'base64')).digest().subarray(0, 8).toString('hex')}.`
}

describe('encryption key rotation on a shared store', () => {
  let peers: Peers
  let store: IsolatedStore
  let relay: RelayProcess | undefined

  beforeAll(async () => {
    ;[peers, store] = await Promise.all([startPeers(), isolatedStore('redis')])
  }, 120_000)

  afterAll(async () => {
    await relay?.stop()
    await Promise.all([peers?.close(), store?.release()])
  })

  async function restartWith(keys: string): Promise<RelayProcess> {
    const port = relay?.port
    await relay?.stop()
    relay = await startReplica(deploymentEnv(peers, store.url, { RELAY_ENCRYPTION_KEY: keys }), port ? { port } : {})
    return relay
  }

  it('opens key-1 tokens after a restart with key2,key1 and seals them with key 2 on their next write', async () => {
    const sealedWith = (key: string) => new RegExp(`^${sealPrefix(key).replaceAll('.', '\\.')}`)
    let current = await restartWith(KEY_1)
    await signIn(current, 'rotator')
    await signIn(current, 'left-behind')
    expect(await readRawToken(store, docsTokenKey('rotator'))).toMatch(sealedWith(KEY_1))

    current = await restartWith(`${KEY_2},${KEY_1}`)
    // Still key 1's when the call opens it (the call may refresh it, which opens it first too).
    expect(await readRawToken(store, docsTokenKey('rotator'))).toMatch(sealedWith(KEY_1))
    await expectSignedInAs(current, 'rotator')
    // The next write of rotator's token is its refresh: sealed with key 2 from then on.
    await waitForExpiry()
    await expectSignedInAs(current, 'rotator')
    expect(peers.as.refreshCount('rotator')).toBeGreaterThanOrEqual(1)
    expect(await readRawToken(store, docsTokenKey('rotator'))).toMatch(sealedWith(KEY_2))
    // left-behind made no call since it signed in: its token is still sealed with key 1 only.
    expect(await readRawToken(store, docsTokenKey('left-behind'))).toMatch(sealedWith(KEY_1))

    // Key 1 retired: rotator's token moved and still works; left-behind's no key opens, which
    // reads as "not signed in" (a login link), logged once, never an error.
    current = await restartWith(KEY_2)
    await expectSignedInAs(current, 'rotator')
    for (let i = 0; i < 2; i++) {
      const answer = await whoami(current, 'left-behind')
      expect(answer).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth' })
    }
    // Only that token: the client registration (written once, at the first sign-in) was moved to
    // key 2 when read under key2,key1; had it stayed on key 1, the relay would now register anew
    // and every user's refresh would be refused for a client mismatch.
    await current.logsSettled()
    const unreadable = current.logs().filter((line) => line.msg === 'sealed value unreadable, treated as absent')
    expect(unreadable.map((line) => line.namespace)).toEqual(['relay/tokens'])
    await waitForExpiry()
    await expectSignedInAs(current, 'rotator')
    expect(await signOutsIn(current)).toBe(0)
  }, 120_000)
})
