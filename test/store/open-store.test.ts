import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { createClient } from '@keyv/redis'
import pg from 'pg'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { isRelayError } from '../../src/errors.ts'
import { storeKey } from '../../src/store/keys.ts'
import { openStore, parseStoreUrl, SWEEP_EVERY_MS, type RelayStore } from '../../src/store/open-store.ts'
import { waitUntil } from '../battery/harness.ts'
import { BACKENDS, cleanUp, POSTGRES_URL, REDIS_URL, removeSqliteDirs, uniquePrefix } from './backends.ts'

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms))

afterAll(removeSqliteDirs)

describe.each(BACKENDS)('$kind store', ({ kind, url }) => {
  let store: RelayStore
  let prefix: string
  let at: string
  let cleaned = false

  async function open(): Promise<RelayStore> {
    prefix = uniquePrefix()
    cleaned = false
    at = url()
    store = await openStore(at, { keyPrefix: prefix })
    return store
  }

  /** The keys of the `files` namespace as the backend holds them, expired or not: what a sweep must remove. */
  async function storedFileKeys(): Promise<string[]> {
    const namespace = `${prefix}/files`
    switch (kind) {
      case 'memory':
        return [...(store.namespace('files').store as Map<string, unknown>).keys()]
      case 'sqlite': {
        const db = new DatabaseSync(at.slice('sqlite://'.length), { readOnly: true })
        try {
          return db.prepare('SELECT key FROM relay_kv WHERE key LIKE ?').all(`${namespace}:%`).map((row) => row.key as string)
        } finally {
          db.close()
        }
      }
      case 'redis': {
        const client = createClient({ url: REDIS_URL })
        await client.connect()
        try {
          return await client.keys(`${namespace}:*`)
        } finally {
          await client.close()
        }
      }
      case 'postgres': {
        const client = new pg.Client({ connectionString: POSTGRES_URL })
        await client.connect()
        try {
          return (await client.query<{ key: string }>('SELECT key FROM relay_kv WHERE key LIKE $1', [`${namespace}:%`])).rows.map((row) => row.key)
        } finally {
          await client.end()
        }
      }
    }
  }

  afterEach(async () => {
    if (!cleaned) await cleanUp(store, prefix)
  })

  it('reports its kind and answers ping', async () => {
    await open()
    expect(store.kind).toBe(kind)
    await expect(store.ping()).resolves.toBeUndefined()
  })

  it('creates one Keyv per namespace and reuses it', async () => {
    await open()
    expect(store.namespace('tokens')).toBe(store.namespace('tokens'))
    expect(store.namespace('tokens')).not.toBe(store.namespace('flows'))
    expect(store.namespace('tokens').store).not.toBe(store.namespace('flows').store)
    expect(() => store.namespace('nope' as never)).toThrow(/Unknown store namespace/)
  })

  it('keeps namespaces apart, including from a key spelled like another namespace', async () => {
    await open()
    const tokens = store.namespace('tokens')
    await tokens.set('k', 'token value')
    await store.namespace('flows').set('k', 'flow value')
    // Keyv does not prefix a key that already starts with "<namespace>:"; keys.ts makes that impossible.
    await tokens.set(storeKey(`${prefix}/tokens`, 'k'), 'look-alike')
    expect(await tokens.get('k')).toBe('token value')
    expect(await store.namespace('flows').get('k')).toBe('flow value')
    expect(await tokens.get(storeKey(`${prefix}/tokens`, 'k'))).toBe('look-alike')
  })

  it('stores keys holding unicode, control characters and lone surrogates', async () => {
    await open()
    const tokens = store.namespace('tokens')
    const odd = ['租户', 'user\u0000\n\t\u007f', '\uD800', '😀:%', 'https://mcp.example.com/mcp?x=1']
    await tokens.set(storeKey(...odd), { ok: 1 })
    expect(await tokens.get(storeKey(...odd))).toEqual({ ok: 1 })
    expect(await tokens.get(storeKey('租户', 'user\u0000\n\t\u007f', '\uDC00', '😀:%', 'https://mcp.example.com/mcp?x=1'))).toBeUndefined()
  })

  it('expires values after their ttl', async () => {
    await open()
    const tickets = store.namespace('tickets')
    // Long enough to read back on a loaded machine; then polled (bounded) until it is gone.
    await tickets.set('short', 'v', 1500)
    await tickets.set('long', 'v', 60_000)
    await tickets.set('forever', 'v')
    expect(await tickets.get('short')).toBe('v')
    await waitUntil(async () => (await tickets.get('short')) === undefined, 8000, 'the short ticket to expire')
    expect(await tickets.get('long')).toBe('v')
    expect(await tickets.get('forever')).toBe('v')
  })

  it('removes entries that expired unread, by itself every SWEEP_EVERY_MS, large ones too; live ones stay', async () => {
    // Only the sweep's interval is faked: everything else (the backend's I/O, Keyv's clock) is real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] })
    try {
      await open()
      const files = store.namespace('files')
      await files.set('expired-file', 'x'.repeat(4 * 1024 * 1024), 300)
      await files.set('expired-small', 'x', 300)
      const expiredBy = Date.now() + 300
      await files.set('live-file', 'y', 60_000)
      await waitUntil(() => Date.now() > expiredBy, 5000, 'the entries to expire')
      // Redis removes expired keys by itself; the other backends keep them until swept.
      if (kind !== 'redis') expect((await storedFileKeys()).filter((key) => key.includes('expired'))).toHaveLength(2)
      vi.advanceTimersByTime(SWEEP_EVERY_MS)
      await waitUntil(async () => !(await storedFileKeys()).some((key) => key.includes('expired')), 10_000, 'the sweep')
      expect((await storedFileKeys()).filter((key) => key.includes('live-file'))).toHaveLength(1)
      expect(await files.get('live-file')).toBe('y')
    } finally {
      vi.useRealTimers()
    }
  })

  it('lets exactly one of several concurrent deletes of a key return true', async () => {
    await open()
    const flows = store.namespace('flows')
    for (let round = 0; round < 20; round++) {
      await flows.set(`state-${round}`, { verifier: 'v' })
      const results = await Promise.all(Array.from({ length: 6 }, () => flows.delete(`state-${round}`)))
      expect(results.filter(Boolean)).toHaveLength(1)
    }
    expect(await flows.delete('never-set')).toBe(false)
  })

  it('lets exactly one of two concurrent get-then-delete "takes" win', async () => {
    await open()
    const flows = store.namespace('flows')
    const take = async (key: string) => {
      const value: unknown = await flows.get(key)
      return value !== undefined && (await flows.delete(key)) ? value : undefined
    }
    await flows.set('state', { ticket: 't1' })
    const [a, b] = await Promise.all([take('state'), take('state')])
    expect([a, b].filter((value) => value !== undefined)).toEqual([{ ticket: 't1' }])
  })

  it('closes idempotently', async () => {
    await open()
    await cleanUp(store, prefix) // closes it
    cleaned = true
    await expect(store.close()).resolves.toBeUndefined()
    if (kind === 'sqlite') {
      const error = await store.namespace('tokens').get('k').catch((caught: unknown) => caught)
      expect(isRelayError(error, 'STORE_UNAVAILABLE')).toBe(true)
    }
  })
})

describe('parseStoreUrl', () => {
  it.each([
    ['memory://', 'memory'],
    ['redis://127.0.0.1:6379/0', 'redis'],
    ['rediss://user:pw@redis.example.com:6380', 'redis'],
    ['postgres://u@localhost/db', 'postgres'],
    ['postgresql://u@localhost/db', 'postgres'],
    ['SQLITE:///var/lib/relay.sqlite', 'sqlite'],
  ])('%s is %s', (url, kind) => {
    expect(parseStoreUrl(url).kind).toBe(kind)
  })

  it('resolves a relative SQLite path against the working directory', () => {
    expect(parseStoreUrl('sqlite://./data/relay.sqlite').path).toBe(resolve(process.cwd(), 'data/relay.sqlite'))
    expect(parseStoreUrl('sqlite:///abs/relay.sqlite').path).toBe('/abs/relay.sqlite')
  })

  it('rejects other schemes and empty paths naming STORE_URL, never echoing the URL', () => {
    expect(() => parseStoreUrl('mysql://root:hunter2@db/x')).toThrow(/^STORE_URL must start with/)
    expect(() => parseStoreUrl('mysql://root:hunter2@db/x')).not.toThrow(/hunter2/)
    expect(() => parseStoreUrl('relay.sqlite')).toThrow(/STORE_URL/)
    expect(() => parseStoreUrl('sqlite://')).toThrow(/STORE_URL sqlite:\/\/ needs a file path/)
  })
})

describe('openStore with sqlite://relative/path', () => {
  it('creates the parent directory under the working directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-cwd-'))
    const before = process.cwd()
    process.chdir(dir)
    try {
      const store = await openStore('sqlite://./nested/data/relay.sqlite')
      await store.namespace('tokens').set('k', 'v')
      await store.close()
      expect(existsSync(join(dir, 'nested/data/relay.sqlite'))).toBe(true)
    } finally {
      process.chdir(before)
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
