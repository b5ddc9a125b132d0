import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { isRelayError } from '../../src/errors.ts'
import { LockWaitTimeoutError, withLock, type StoreLock } from '../../src/store/lock.ts'
import { openStore, type RelayStore } from '../../src/store/open-store.ts'
import { BACKENDS, cleanUp, removeSqliteDirs, uniquePrefix } from './backends.ts'

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms))

afterAll(removeSqliteDirs)

describe.each(BACKENDS)('$kind lock', ({ kind, url }) => {
  const opened: Array<{ store: RelayStore; prefix: string }> = []
  let lock: StoreLock
  let storeUrl: string
  let prefix: string

  /** A store on the shared backend; a second call is a second replica on the same data. */
  async function openReplica(): Promise<RelayStore> {
    const store = await openStore(storeUrl, { keyPrefix: prefix })
    opened.push({ store, prefix })
    return store
  }

  async function setUp(): Promise<void> {
    storeUrl = url()
    prefix = uniquePrefix()
    lock = (await openReplica()).lock
  }

  afterEach(async () => {
    for (const { store, prefix } of opened.splice(0)) await cleanUp(store, prefix)
  })

  it('gives a lease to one owner at a time; only the owner renews or releases it', async () => {
    await setUp()
    const owner = await lock.acquire('refresh', 5000)
    expect(owner).toBeTypeOf('string')
    expect(await lock.acquire('refresh', 5000)).toBeUndefined()
    expect(await lock.acquire('other-key', 5000)).toBeTypeOf('string')

    expect(await lock.renew('refresh', 'not-the-owner', 5000)).toBe(false)
    await lock.release('refresh', 'not-the-owner')
    expect(await lock.acquire('refresh', 5000)).toBeUndefined()

    expect(await lock.renew('refresh', owner!, 5000)).toBe(true)
    await lock.release('refresh', owner!)
    expect(await lock.acquire('refresh', 5000)).toBeTypeOf('string')
  })

  it('lets an expired lease be taken over, and the old owner can then neither renew nor release it', async () => {
    await setUp()
    const dead = await lock.acquire('refresh', 150)
    await sleep(250)
    const next = await lock.acquire('refresh', 5000)
    expect(next).toBeTypeOf('string')
    expect(next).not.toBe(dead)
    expect(await lock.renew('refresh', dead!, 5000)).toBe(false)
    await lock.release('refresh', dead!)
    expect(await lock.acquire('refresh', 5000)).toBeUndefined()
  })

  it('does not let a renewed lease be taken over', async () => {
    await setUp()
    // A first lease long enough for the renewal to reach the store in time under load.
    const owner = await lock.acquire('refresh', 1000)
    expect(await lock.renew('refresh', owner!, 5000)).toBe(true)
    // Past the first expiry (time itself is what this waits for), well within the renewed one.
    await sleep(1200)
    expect(await lock.acquire('refresh', 300)).toBeUndefined()
  })

  it('never runs two withLock bodies on one key at once, across replicas', async () => {
    await setUp()
    const locks = kind === 'memory' ? [lock] : [lock, (await openReplica()).lock]
    let active = 0
    let most = 0
    const ran: number[] = []
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        withLock(
          locks[i % locks.length]!,
          'refresh',
          async () => {
            active++
            most = Math.max(most, active)
            await sleep(20)
            ran.push(i)
            active--
          },
          { ttlMs: 2000, waitMs: 10_000, pollMs: 10 },
        ),
      ),
    )
    expect(most).toBe(1)
    expect(ran.sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
  })

  it('renews the lease while the body runs longer than the ttl, then releases it', async () => {
    await setUp()
    let stolen: string | undefined
    let signal: AbortSignal | undefined
    // The body outlives the ttl by half again; renewals every ttl/3 keep it, with room for a
    // renewal to run a second late on a loaded machine (a 300 ms ttl did not).
    const ttlMs = 2400
    const started = Date.now()
    const result = await withLock(
      lock,
      'refresh',
      async (s) => {
        signal = s
        while (Date.now() - started < ttlMs * 1.5) {
          await sleep(300)
          stolen ??= await lock.acquire('refresh', ttlMs)
        }
        return 'refreshed'
      },
      { ttlMs, waitMs: 1000 },
    )
    expect(result).toBe('refreshed')
    expect(stolen).toBeUndefined()
    expect(signal?.aborted).toBe(false)
    expect(await lock.acquire('refresh', ttlMs)).toBeTypeOf('string') // released after
  })

  it('takes over from a holder that died without releasing, after its ttl', async () => {
    await setUp()
    // Timed from before the lease is written (a slow write under load must not eat the ttl).
    const started = Date.now()
    await lock.acquire('refresh', 200) // never released
    expect(await withLock(lock, 'refresh', async () => 'mine', { ttlMs: 1000, waitMs: 3000, pollMs: 20 })).toBe('mine')
    expect(Date.now() - started).toBeGreaterThanOrEqual(150)
  })

  it('gives up with LockWaitTimeoutError when the lock stays held for waitMs', async () => {
    await setUp()
    await lock.acquire('refresh', 5000)
    const started = Date.now()
    const error = await withLock(lock, 'refresh', async () => 'never', { ttlMs: 1000, waitMs: 200 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(LockWaitTimeoutError)
    expect(isRelayError(error, 'STORE_UNAVAILABLE')).toBe(false)
    expect((error as Error).message).toMatch(/waiting for a lock/)
    // Gave up at waitMs, long before the 5 s lease would have ended (a loose bound: no timing race under load).
    expect(Date.now() - started).toBeLessThan(4000)
  })

  it('releases the lease when the body throws, and passes the error on', async () => {
    await setUp()
    const failure = new Error('token endpoint said 503')
    await expect(withLock(lock, 'refresh', async () => Promise.reject(failure), { ttlMs: 5000, waitMs: 100 })).rejects.toBe(failure)
    expect(await lock.acquire('refresh', 5000)).toBeTypeOf('string')
  })

  it('aborts the body\'s signal when a renewal finds the lease lost', async () => {
    await setUp()
    // Only the failure is faked: this lock's renewals report the lease gone (an outage longer than the ttl).
    const losing: StoreLock = { ...lock, renew: async () => false }
    const seen = await withLock(
      losing,
      'refresh',
      // Waits for the abort itself (bounded), not for a guess at when the first renewal runs.
      (signal) =>
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(signal.aborted), 5000)
          signal.addEventListener('abort', () => {
            clearTimeout(timer)
            resolve(true)
          })
        }),
      { ttlMs: 150, waitMs: 100 },
    )
    expect(seen).toBe(true)
  })

  it('aborts the body\'s signal before the lease can run out when renewals keep failing', async () => {
    await setUp()
    // The store stops answering this replica's renewals: the lease would end at ttl with nobody told.
    const unreachable: StoreLock = { ...lock, renew: async () => Promise.reject(new Error('store unreachable')) }
    const seen = await withLock(
      unreachable,
      'refresh',
      (signal) =>
        new Promise<{ reason: string; takenOver: boolean } | undefined>((resolve) => {
          const timer = setTimeout(() => resolve(undefined), 5000)
          signal.addEventListener('abort', async () => {
            clearTimeout(timer)
            // Aborted while the lease still holds: another replica cannot have the lock yet.
            resolve({ reason: String((signal.reason as Error).message), takenOver: (await lock.acquire('refresh', 1500)) !== undefined })
          })
        }),
      { ttlMs: 1500, waitMs: 100 },
    )
    expect(seen).toEqual({ reason: 'The lock lease could not be renewed in time', takenOver: false })
  })
})
