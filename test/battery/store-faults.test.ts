// Store faults under the real relay: a Redis of this test's own stopped and started again, and
// frozen, mid-run; the SQLite file made read-only. While the store is gone every route answers
// STORE_UNAVAILABLE with a clear message within the store's 2 s bound (the three tool routes as
// HTTP 200 ok: false, which Dify passes to the model, DESIGN.md §4; reset 503; an HTML page on the
// browser routes), /readyz fails, and afterwards the relay recovers without a restart and no
// signed-in user has lost their token.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, followToCallback, pressContinue } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRedisProcess } from '../store/redis-process.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'
import { answeredByStatus, createTally, send, signIn, waitUntil, whoami } from './harness.ts'

/** STORE_TIMEOUT_MS (2 s) and room for the request around it on a busy CI machine. */
const UNAVAILABLE_BOUND_MS = 3200

let as: AuthorizationServer
let docs: McpUpstream
const tally = createTally('store-faults')
const dirs: string[] = []
const relays: TestRelay[] = []

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
})

afterAll(async () => {
  tally.print({ serverErrorsOther503: tally.serverErrors() - tally.count(503), relayAnswers: await answeredByStatus(relays) })
  await Promise.all([docs?.close(), as?.close()])
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'relay-battery-'))
  dirs.push(dir)
  return dir
}

/** A redis-server on its own port that keeps its data on disk across stop and start. */
function startPersistentRedis() {
  return startRedisProcess({ dataDir: tempDir() })
}

const SERVERS = () => [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }]

/** Every route while the store is gone: STORE_UNAVAILABLE, fast, in the route's own form. */
async function expectUnavailableEverywhere(relay: TestRelay, context: { loginPath: string; callbackPath: string }): Promise<number> {
  const json = { authorization: `Bearer ${relay.apiKey}`, 'content-type': 'application/json' }
  const requests = [
    { path: '/tools/auth-status', body: { user_id: 'alice' } },
    { path: '/tools/list-tools', body: { user_id: 'alice' } },
    { path: '/tools/call-tool', body: { user_id: 'alice', tool_ref: 'docs::whoami', input: {} } },
    { path: '/oauth/reset', body: { user_id: 'nobody' } },
  ]
  let slowest = 0
  const timedSend = async (request: Parameters<typeof send>[1]) => {
    const started = Date.now()
    const answer = await send(relay, request)
    tally.add(answer.status)
    slowest = Math.max(slowest, Date.now() - started)
    return answer
  }
  // All at once: a silent store costs each of them the 2 s bound, not the sum.
  const [answers, pages] = await Promise.all([
    Promise.all(requests.map(({ path, body }) => timedSend({ path, headers: json, body: JSON.stringify(body) }))),
    Promise.all([context.loginPath, context.callbackPath].map((path) => timedSend({ method: 'GET', path }))),
  ])
  for (const [index, answer] of answers.entries()) {
    const path = requests[index]!.path
    if (path.startsWith('/tools/')) {
      expect(answer.status, `${path}: ${answer.text}`).toBe(200)
      expect(answer.json).toEqual({ ok: false, error_code: 'STORE_UNAVAILABLE', retry_after_seconds: 10, message: expect.stringMatching(/cannot reach its store/) })
    } else {
      expect(answer.status, `${path}: ${answer.text}`).toBe(503)
      expect(answer.json).toEqual({ error: { code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/^The store \((redis|sqlite)\) /) } })
    }
  }
  for (const page of pages) {
    expect(page.status).toBe(503)
    expect(page.headers.get('content-type')).toContain('text/html')
    expect(page.text).toContain('The relay is unavailable')
    expect(page.headers.get('location')).toBeNull()
  }
  const ready = await send(relay, { method: 'GET', path: '/readyz' })
  tally.add(ready.status)
  expect(ready.status).toBe(503)
  expect(ready.json.error.code).toBe('STORE_UNAVAILABLE')
  const live = await send(relay, { method: 'GET', path: '/healthz' })
  tally.add(live.status)
  expect(live.status).toBe(200)
  expect(slowest).toBeLessThan(UNAVAILABLE_BOUND_MS)
  return slowest
}

async function waitUntilReady(relay: TestRelay): Promise<number> {
  return waitUntil(async () => (await send(relay, { method: 'GET', path: '/readyz' })).status === 200, 10_000, 'store back')
}

describe('Redis stopped and started again mid-run', () => {
  it('answers STORE_UNAVAILABLE while it is gone, recovers by itself, and no token is lost', async () => {
    tally.fault('redis stopped and started')
    const redis = await startPersistentRedis()
    const relay = await startRelay({
      servers: SERVERS(),
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, STORE_URL: redis.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') },
    })
    relays.push(relay)
    try {
      await signIn(relay, 'alice', 'alice')
      expect((await whoami(relay, 'alice')).sub).toBe('alice')
      // A sign-in in progress across the outage: its login link, and a browser at the callback.
      const pendingStatus = await relay.post('/tools/auth-status', { user_id: 'carol', server_id: 'docs' })
      const carolsBrowser = createCookieJar()
      const pendingCallback = new URL(await followToCallback(pendingStatus.body.servers[0].login_url, 'carol', { jar: carolsBrowser }))
      const unusedStatus = await relay.post('/tools/auth-status', { user_id: 'dave', server_id: 'docs' })
      const unusedLogin = new URL(unusedStatus.body.servers[0].login_url).pathname

      await redis.stop()
      const slowest = await expectUnavailableEverywhere(relay, { loginPath: unusedLogin, callbackPath: `${pendingCallback.pathname}${pendingCallback.search}` })
      console.info(`[battery] redis down: slowest answer ${slowest} ms`)

      await redis.start()
      const recovery = await waitUntilReady(relay)
      console.info(`[battery] redis back: ready again after ${recovery} ms`)
      expect((await whoami(relay, 'alice')).sub).toBe('alice')
      // The sign-in that was in flight completes, and the unused link still works.
      const page = await send(relay, { method: 'GET', path: `${pendingCallback.pathname}${pendingCallback.search}`, headers: { cookie: carolsBrowser.header(pendingCallback)! } })
      tally.add(page.status)
      expect(page.status).toBe(200)
      expect((await whoami(relay, 'carol')).sub).toBe('carol')
      const start = await pressContinue(`${relay.url}${unusedLogin}`)
      tally.add(start.status)
      expect(start.status).toBe(302)
    } finally {
      await relay.close()
      await redis.stop()
    }
  }, 60_000)

  it('a frozen Redis (no answers, connections open) is STORE_UNAVAILABLE within the bound, and recovers', async () => {
    tally.fault('redis frozen')
    const redis = await startPersistentRedis()
    const relay = await startRelay({
      servers: SERVERS(),
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, STORE_URL: redis.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') },
    })
    relays.push(relay)
    try {
      await signIn(relay, 'alice', 'alice')
      const pending = await relay.post('/tools/auth-status', { user_id: 'erin', server_id: 'docs' })
      const login = new URL(pending.body.servers[0].login_url).pathname
      redis.freeze()
      await expectUnavailableEverywhere(relay, { loginPath: login, callbackPath: '/oauth/callback?state=whatever&code=x' })
      redis.thaw()
      await waitUntilReady(relay)
      expect((await whoami(relay, 'alice')).sub).toBe('alice')
    } finally {
      redis.thaw()
      await relay.close()
      await redis.stop()
    }
  }, 60_000)
})

/** chattr +i needs CAP_LINUX_IMMUTABLE and a file system that supports it (ext4 here); root alone ignores chmod. */
function immutableSupported(): boolean {
  const dir = tempDir()
  const probe = join(dir, 'probe')
  writeFileSync(probe, 'x')
  const set = spawnSync('chattr', ['+i', probe])
  if (set.status !== 0) return false
  spawnSync('chattr', ['-i', probe])
  return true
}

describe('the SQLite file made read-only', () => {
  const supported = immutableSupported()
  if (!supported) console.info('[battery] SQLite read-only: chattr +i is not available here; the case is skipped')

  it.skipIf(!supported)('writes answer STORE_UNAVAILABLE (200 ok: false on a tool route, 503 on reset), /readyz fails, reads still serve the signed-in user, and it recovers', async () => {
    tally.fault('sqlite read-only')
    const dir = tempDir()
    const database = join(dir, 'relay.sqlite')
    const relay = await startRelay({ servers: SERVERS(), env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, STORE_URL: `sqlite://${database}` } })
    relays.push(relay)
    // The database file and its write-ahead log; not the -shm index, which SQLite maps into memory:
    // making that immutable under a live process ends it with SIGBUS (a fault no code can answer).
    const files = [database, `${database}-wal`]
    const chattr = (flag: '+i' | '-i') => {
      const result = spawnSync('chattr', [flag, ...files])
      expect(result.status, String(result.stderr)).toBe(0)
    }
    try {
      await signIn(relay, 'alice', 'alice')
      expect((await whoami(relay, 'alice')).sub).toBe('alice')
      chattr('+i')
      const json = { authorization: `Bearer ${relay.apiKey}`, 'content-type': 'application/json' }
      // A new user's sign-in needs a ticket written: STORE_UNAVAILABLE, as the tool routes answer it.
      const started = Date.now()
      const needsWrite = await send(relay, { path: '/tools/auth-status', headers: json, body: JSON.stringify({ user_id: 'frank', server_id: 'docs' }) })
      tally.add(needsWrite.status)
      expect(needsWrite.status).toBe(200)
      expect(needsWrite.json).toMatchObject({ ok: false, error_code: 'STORE_UNAVAILABLE', retry_after_seconds: 10 })
      expect(Date.now() - started).toBeLessThan(UNAVAILABLE_BOUND_MS)
      const reset = await send(relay, { path: '/oauth/reset', headers: json, body: JSON.stringify({ user_id: 'alice' }) })
      tally.add(reset.status)
      expect(reset.status).toBe(503)
      expect(reset.json).toEqual({ error: { code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/^The store \(sqlite\) /) } })
      const ready = await send(relay, { method: 'GET', path: '/readyz' })
      tally.add(ready.status)
      expect(ready.status).toBe(503)
      // Reading still works: the signed-in user's call needs no write.
      const alice = await whoami(relay, 'alice')
      tally.add(alice.status)
      expect(alice.sub).toBe('alice')

      chattr('-i')
      await waitUntilReady(relay)
      // The refused reset removed nothing: alice is still signed in.
      expect((await whoami(relay, 'alice')).sub).toBe('alice')
      await signIn(relay, 'frank', 'frank')
      expect((await whoami(relay, 'frank')).sub).toBe('frank')
    } finally {
      spawnSync('chattr', ['-i', ...files])
      await relay.close()
    }
  }, 60_000)
})
