import { describe, expect, it } from 'vitest'
import { isRelayError } from '../../src/errors.ts'
import { withLock } from '../../src/store/lock.ts'
import { openStore, type RelayStore } from '../../src/store/open-store.ts'
import { openSqliteDatabase } from '../../src/store/sqlite-store.ts'
import { POSTGRES_PORT, postgresUrl } from '../support/services.ts'
import { BACKENDS, POSTGRES_URL, removeSqliteDirs, uniquePrefix } from './backends.ts'
import { startRedisProcess } from './redis-process.ts'
import { freePort, startTcpProxy } from './tcp-proxy.ts'
import { afterAll } from 'vitest'

// What callers may wait at most for a store that is down or silent (STORE_TIMEOUT_MS plus slack).
const BOUND_MS = 2600

afterAll(removeSqliteDirs)

/** Runs `call`, expecting RelayError STORE_UNAVAILABLE within BOUND_MS; returns how long it took. */
async function expectUnavailable(call: () => Promise<unknown>): Promise<number> {
  const started = Date.now()
  const error = await call().then(
    () => new Error('expected STORE_UNAVAILABLE, but the call succeeded'),
    (caught: unknown) => caught,
  )
  const elapsed = Date.now() - started
  expect(isRelayError(error, 'STORE_UNAVAILABLE'), String(error)).toBe(true)
  expect(elapsed).toBeLessThan(BOUND_MS)
  return elapsed
}

/** Every operation callers use fails as STORE_UNAVAILABLE within the bound; returns the slowest. */
async function expectAllUnavailable(store: RelayStore): Promise<number> {
  const tokens = store.namespace('tokens')
  const times = [
    await expectUnavailable(() => tokens.get('k')),
    await expectUnavailable(() => tokens.set('k', 'v')),
    await expectUnavailable(() => tokens.delete('k')),
    await expectUnavailable(() => tokens.has('k')),
    await expectUnavailable(() => store.ping()),
    await expectUnavailable(() => store.lock.acquire('k', 1000)),
    await expectUnavailable(() => withLock(store.lock, 'k', async () => 'ran', { ttlMs: 1000, waitMs: 1000 })),
  ]
  return Math.max(...times)
}

async function waitUntilAnswering(store: RelayStore, limitMs: number): Promise<number> {
  const started = Date.now()
  for (;;) {
    try {
      await store.ping()
      return Date.now() - started
    } catch (error) {
      if (Date.now() - started > limitMs) throw error
      await new Promise((done) => setTimeout(done, 100))
    }
  }
}

function recordingLogger() {
  const messages: string[] = []
  const record = (_obj: object, msg: string) => void messages.push(msg)
  return { messages, logger: { info: record, warn: record, error: record } }
}

describe('redis that goes down and comes back', () => {
  it('fails fast while down, and the same store works again once it is back', async () => {
    const redis = await startRedisProcess()
    const { messages, logger } = recordingLogger()
    const store = await openStore(redis.url, { logger, keyPrefix: uniquePrefix() })
    try {
      const tokens = store.namespace('tokens')
      await tokens.set('k', 'before')
      expect(await tokens.get('k')).toBe('before')

      await redis.kill()
      const slowest = await expectAllUnavailable(store)
      console.info(`redis down: slowest failure ${slowest} ms`)

      await redis.start()
      const recovery = await waitUntilAnswering(store, 5000)
      console.info(`redis back: store answering again after ${recovery} ms`)
      await tokens.set('k', 'after') // a fresh redis-server: the old data went with the old process
      expect(await tokens.get('k')).toBe('after')
      expect(await store.lock.acquire('k', 1000)).toBeTypeOf('string')
      expect(messages.filter((m) => m === 'store connection lost, reconnecting')).toHaveLength(1)
      expect(messages.filter((m) => m === 'store connection restored')).toHaveLength(1)
    } finally {
      await store.close()
      await redis.kill()
    }
  })

  it('starts while redis is down and picks it up when it starts', async () => {
    const redis = await startRedisProcess()
    await redis.kill()
    const store = await openStore(redis.url, { keyPrefix: uniquePrefix() })
    try {
      await expectAllUnavailable(store)
      await redis.start()
      await waitUntilAnswering(store, 5000)
      await store.namespace('tokens').set('k', 'v')
      expect(await store.namespace('tokens').get('k')).toBe('v')
    } finally {
      await store.close()
      await redis.kill()
    }
  })
})

describe('postgres that goes down and comes back (through a proxy)', () => {
  it('fails fast while down, and the same store works again once it is back', async () => {
    const proxy = await startTcpProxy(POSTGRES_PORT)
    const prefix = uniquePrefix()
    const url = postgresUrl({ port: proxy.port })
    const store = await openStore(url, { keyPrefix: prefix })
    try {
      const tokens = store.namespace('tokens')
      await tokens.set('k', 'before')

      await proxy.stop()
      const slowest = await expectAllUnavailable(store)
      console.info(`postgres down: slowest failure ${slowest} ms`)

      await proxy.start()
      const recovery = await waitUntilAnswering(store, 5000)
      console.info(`postgres back: store answering again after ${recovery} ms`)
      expect(await tokens.get('k')).toBe('before')
      await tokens.delete('k')
    } finally {
      await store.close()
      await proxy.stop()
    }
  })

  it('bounds calls to a server that stops answering (a black hole), then recovers', async () => {
    const proxy = await startTcpProxy(POSTGRES_PORT)
    const store = await openStore(postgresUrl({ port: proxy.port }), { keyPrefix: uniquePrefix() })
    try {
      await store.ping()
      proxy.freeze()
      const elapsed = await expectUnavailable(() => store.namespace('tokens').get('k'))
      expect(elapsed).toBeGreaterThanOrEqual(1500)
      console.info(`postgres silent: call failed after ${elapsed} ms`)
      await proxy.stop()
      await proxy.start()
      await waitUntilAnswering(store, 5000)
    } finally {
      await store.close()
      await proxy.stop()
    }
  })
})

describe('redis that stops answering (a black hole)', () => {
  it('bounds calls, then recovers once the connection is replaced', async () => {
    const redis = await startRedisProcess()
    const proxy = await startTcpProxy(redis.port)
    const store = await openStore(`redis://127.0.0.1:${proxy.port}`, { keyPrefix: uniquePrefix() })
    try {
      await store.ping()
      proxy.freeze()
      const elapsed = await expectUnavailable(() => store.namespace('tokens').get('k'))
      expect(elapsed).toBeGreaterThanOrEqual(1500)
      console.info(`redis silent: call failed after ${elapsed} ms`)
      await proxy.stop()
      await proxy.start()
      await waitUntilAnswering(store, 5000)
    } finally {
      await store.close()
      await proxy.stop()
      await redis.kill()
    }
  })
})

describe('a store URL with a password', () => {
  it.each([
    ['redis', (port: number) => `redis://user:s3cret-pw@127.0.0.1:${port}`],
    ['postgres', (port: number) => `postgres://postgres:s3cret-pw@127.0.0.1:${port}/test`],
  ])('%s: errors never carry the password', async (kind, url) => {
    const store = await openStore(url(await freePort()))
    try {
      const error = await store.namespace('tokens').get('k').catch((caught: unknown) => caught)
      expect(isRelayError(error, 'STORE_UNAVAILABLE')).toBe(true)
      expect((error as Error).message).toBe(`The store (${kind}) did not answer`)
      let text = ''
      for (let e: unknown = error; e instanceof Error; e = e.cause) text += `${e.message}\n${e.stack}\n`
      expect(text).not.toContain('s3cret-pw')
    } finally {
      await store.close()
    }
  })
})

describe('sqlite failures', () => {
  it('a write blocked by another process fails as STORE_UNAVAILABLE, then works', async () => {
    const url = BACKENDS.find((b) => b.kind === 'sqlite')!.url()
    const store = await openStore(url)
    const other = openSqliteDatabase(url.slice('sqlite://'.length)) // a second connection, as another process would hold
    try {
      const tokens = store.namespace('tokens')
      await tokens.set('k', 'v')
      other.exec('BEGIN IMMEDIATE') // holds the write lock
      await expectUnavailable(() => tokens.set('k', 'blocked'))
      expect(await tokens.get('k')).toBe('v') // WAL: reads go on beside a writer
      other.exec('COMMIT')
      await tokens.set('k', 'w')
      expect(await tokens.get('k')).toBe('w')
    } finally {
      other.close()
      await store.close()
    }
  })
})

describe('postgres at start-up', () => {
  it('creates its tables on first use when the server was down at start', async () => {
    const proxy = await startTcpProxy(POSTGRES_PORT)
    await proxy.stop()
    const store = await openStore(postgresUrl({ port: proxy.port }), { keyPrefix: uniquePrefix() })
    try {
      await expectUnavailable(() => store.namespace('tokens').get('k'))
      await proxy.start()
      await waitUntilAnswering(store, 5000)
      await store.namespace('tokens').set('k', 'v')
      expect(await store.namespace('tokens').get('k')).toBe('v')
      await store.namespace('tokens').clear()
    } finally {
      await store.close()
      await proxy.stop()
    }
  })

  it('shares one small pool: many namespaces and locks at once never exceed it', async () => {
    const store = await openStore(POSTGRES_URL, { keyPrefix: uniquePrefix() })
    try {
      const names = ['tokens', 'clients', 'discovery', 'tickets', 'flows', 'tools', 'steps'] as const
      await Promise.all(names.flatMap((name) => Array.from({ length: 10 }, (_, i) => store.namespace(name).set(`k${i}`, i))))
      for (const name of names) await store.namespace(name).clear()
    } finally {
      await store.close()
    }
  })
})
