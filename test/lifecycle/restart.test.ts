// A relay process restarted on the same SQLite file (and the key file it generated beside it):
// signed-in users stay signed in, and sign-ins begun (or waiting for their code) before the
// restart finish after it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCookieJar, followToCallback, openInBrowser, signInThroughBrowser } from '../peers/browser.ts'
import { createSqliteFile, type IsolatedStore } from '../support/isolated-stores.ts'
import type { RelayProcess } from '../support/relay-process.ts'
import { deploymentEnv, expectSignedInAs, loginUrlFor, signIn, startPeers, startReplica, type Peers } from './lifecycle-peers.ts'

describe('a restart on the same SQLite file', () => {
  let peers: Peers
  let store: IsolatedStore
  let relay: RelayProcess

  beforeAll(async () => {
    peers = await startPeers()
    store = createSqliteFile()
  }, 30_000)

  afterAll(async () => {
    await relay?.stop()
    await peers?.close()
    await store?.release()
  })

  it('keeps users signed in, and completes login links and callbacks begun before it', async () => {
    // No RELAY_ENCRYPTION_KEY: the key file generated beside the database must survive too.
    const env = deploymentEnv(peers, store.url, { RELAY_ENCRYPTION_KEY: '' })
    relay = await startReplica(env)
    await signIn(relay, 'keeper')
    // A link issued but not opened yet, and a sign-in that reached the authorization server
    // (its flow is stored) whose callback arrives after the restart.
    const unopened = await loginUrlFor(relay, 'late')
    const midwaysBrowser = createCookieJar()
    const pendingCallback = await followToCallback(await loginUrlFor(relay, 'midway'), 'midway', { jar: midwaysBrowser })

    const port = relay.port
    await relay.stop()
    relay = await startReplica(env, { port })

    await expectSignedInAs(relay, 'keeper')
    const callbackPage = await openInBrowser(pendingCallback, midwaysBrowser, 10_000)
    expect(callbackPage.status, await callbackPage.text()).toBe(200)
    await expectSignedInAs(relay, 'midway')
    const latesBrowser = createCookieJar()
    const latePage = await openInBrowser(await followToCallback(unopened, 'late', { jar: latesBrowser }), latesBrowser, 10_000)
    expect(latePage.status, await latePage.text()).toBe(200)
    await expectSignedInAs(relay, 'late')
  }, 120_000)

  it('with SIGN_IN_CONFIRMATION=code, a sign-in waiting for its code before the restart is confirmed after it', async () => {
    const env = deploymentEnv(peers, store.url, { RELAY_ENCRYPTION_KEY: '', SIGN_IN_CONFIRMATION: 'code' })
    await relay?.stop()
    relay = await startReplica(env)
    const page = await signInThroughBrowser(await loginUrlFor(relay, 'waiter'), 'waiter')
    expect(page.status, page.html).toBe(200)
    const code = /id="confirmation-code">([^<]+)</.exec(page.html)![1]!

    const port = relay.port
    await relay.stop()
    relay = await startReplica(env, { port })

    const waiting = await relay.post('/tools/auth-status', { user_id: 'waiter', server_id: 'docs' })
    expect(waiting.body.servers[0]).toMatchObject({ status: 'need_auth', pending_confirmation: true })
    const confirmed = await relay.post('/tools/auth-status', { user_id: 'waiter', server_id: 'docs', confirm_code: code })
    expect(confirmed.body.servers[0]).toMatchObject({ status: 'authorized' })
    await expectSignedInAs(relay, 'waiter')
  }, 120_000)
})
