// A replica that dies (SIGKILL) in the middle of a refresh, while it holds the refresh lease.
// The authorization server holds the token request, so the crash lands at a known point.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isRefreshLeaseHeld, isolatedStore, readRawToken, type IsolatedStore } from '../support/isolated-stores.ts'
import { signOutsIn, type RelayProcess } from '../support/relay-process.ts'
import {
  deploymentEnv, docsTokenKey, expectSignedInAs, signIn, startPeers, startReplica, waitForExpiry, waitUntil, whoami, type Peers,
} from './lifecycle-peers.ts'

/** Longer than the lease's ttl (10 s): the dead replica's lease must run out before B can refresh. */
const HOLD_MS = 25_000

async function startPair(peers: Peers, store: IsolatedStore): Promise<[RelayProcess, RelayProcess]> {
  const a = await startReplica(deploymentEnv(peers, store.url))
  const b = await startReplica({ ...deploymentEnv(peers, store.url), PUBLIC_BASE_URL: a.url })
  return [a, b]
}

/** Starts a call on `a` that refreshes, waits until its token request is held at the AS, and kills `a` there. */
async function killMidRefresh(peers: Peers, store: IsolatedStore, a: RelayProcess, userId: string): Promise<void> {
  const call = whoami(a, userId).then(
    () => 'answered',
    () => 'connection lost',
  )
  await waitUntil('the refresh to reach the authorization server', () => peers.as.heldTokenRequests() === 1)
  expect(await isRefreshLeaseHeld(store, docsTokenKey(userId))).toBe(true)
  await a.stop('SIGKILL')
  expect(await call).toBe('connection lost')
}

describe.each(['redis', 'postgres'] as const)('a replica killed while it refreshes, on %s', (kind) => {
  let peers: Peers
  let store: IsolatedStore
  let a: RelayProcess
  let b: RelayProcess

  beforeAll(async () => {
    ;[peers, store] = await Promise.all([startPeers(), isolatedStore(kind)])
    ;[a, b] = await startPair(peers, store)
  }, 120_000)

  afterAll(async () => {
    peers?.as.delayTokenEndpoint(undefined)
    await Promise.all([a?.stop(), b?.stop()])
    await Promise.all([peers?.close(), store?.release()])
  })

  it('lets the other replica refresh once the dead one\'s lease runs out; nobody is signed out', async () => {
    const { as } = peers
    await signIn(a, 'survivor')
    await expectSignedInAs(b, 'survivor')
    const stored = await readRawToken(store, docsTokenKey('survivor'))
    await waitForExpiry()

    // Held before oidc-provider reads it: the refresh token the dead replica sent is never used.
    as.delayTokenEndpoint(HOLD_MS)
    await killMidRefresh(peers, store, a, 'survivor')
    await waitUntil('the authorization server to drop the dead replica\'s request', () => as.heldTokenRequests() === 0)
    as.delayTokenEndpoint(undefined)
    expect(as.tokenRequests.at(-1)).toMatchObject({ ok: false, error: 'client_gone' })
    // The store still holds the token the dead replica started from, and its lease.
    expect(await readRawToken(store, docsTokenKey('survivor'))).toBe(stored)
    expect(await isRefreshLeaseHeld(store, docsTokenKey('survivor'))).toBe(true)

    // B waits for the lease to lapse, then refreshes with the same, unused refresh token: its
    // first token request succeeds. (A 3 s token may lapse again before the call reaches the MCP
    // server on a loaded machine, so a second refresh is allowed; a refused one is not.)
    const mark = as.tokenRequests.length
    await expectSignedInAs(b, 'survivor')
    const refreshes = as.tokenRequests.slice(mark)
    expect(refreshes[0]).toMatchObject({ grantType: 'refresh_token', accountId: 'survivor', ok: true })
    expect(refreshes.filter((request) => !request.ok)).toEqual([])
    expect(await signOutsIn(b)).toBe(0)
    await expectSignedInAs(b, 'survivor')
  }, 120_000)
})

describe('a replica killed after the authorization server rotated the refresh token, on redis', () => {
  let peers: Peers
  let store: IsolatedStore
  let a: RelayProcess
  let b: RelayProcess

  beforeAll(async () => {
    ;[peers, store] = await Promise.all([startPeers(), isolatedStore('redis')])
    ;[a, b] = await startPair(peers, store)
  }, 120_000)

  afterAll(async () => {
    peers?.as.delayTokenEndpoint(undefined)
    await Promise.all([a?.stop(), b?.stop()])
    await Promise.all([peers?.close(), store?.release()])
  })

  // What cannot be saved, pinned down: oidc-provider rotated the refresh token and its answer
  // (the only copy of the new one) died with the replica. The store holds the used one; sending
  // it is reuse, and oidc-provider revokes the whole grant (no reuse grace period). The relay
  // answers need_auth with a login link, removes the dead token, and one sign-in mends it.
  it('asks that user to sign in again (the new refresh token died with the replica), and nobody else', async () => {
    const { as } = peers
    await signIn(a, 'unlucky')
    await signIn(b, 'neighbour')
    await waitForExpiry()

    as.delayTokenEndpoint(HOLD_MS, { afterProcessing: true })
    await killMidRefresh(peers, store, a, 'unlucky')
    await waitUntil('the held answer to be dropped', () => as.heldTokenRequests() === 0)
    as.delayTokenEndpoint(undefined)
    expect(as.refreshCount('unlucky')).toBe(1)

    const answer = await whoami(b, 'unlucky')
    expect(answer).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: 'docs' })
    expect(answer.login_url).toMatch(new RegExp(`^${a.url}/oauth/start/`))
    expect(as.tokenRequests.at(-1)).toMatchObject({ grantType: 'refresh_token', ok: false, error: 'invalid_grant' })
    expect(await readRawToken(store, docsTokenKey('unlucky'))).toBeUndefined()

    await expectSignedInAs(b, 'neighbour')
    await signIn(b, 'unlucky', 'unlucky', { reach: b })
    await expectSignedInAs(b, 'unlucky')
  }, 120_000)
})
