import { randomUUID } from 'node:crypto'
import type { DatabaseSync } from 'node:sqlite'
import { RelayError } from '../errors.ts'
import type { RedisClient } from './redis-client.ts'
import { callStore } from './store-unavailable.ts'

/**
 * A lease lock shared by every replica on one store. The owner token makes renew and release
 * compare-and-set, so a holder whose lease ran out cannot renew or release its successor's lease.
 * Every method throws RelayError STORE_UNAVAILABLE when the backend fails.
 */
export interface StoreLock {
  /** The owner token, or undefined while someone else holds an unexpired lease. */
  acquire(key: string, ttlMs: number): Promise<string | undefined>
  /** Extends the lease to ttlMs from now; false if it is no longer this owner's. */
  renew(key: string, owner: string, ttlMs: number): Promise<boolean>
  /** Ends the lease if it is still this owner's. */
  release(key: string, owner: string): Promise<void>
}

/** The wait for a lock ran out while another holder kept renewing it. */
export class LockWaitTimeoutError extends RelayError {
  constructor(waitMs: number) {
    super('INTERNAL', `Gave up after ${waitMs} ms waiting for a lock another request holds`)
    this.name = 'LockWaitTimeoutError'
  }
}

/**
 * Runs `fn` while holding `key`. Outcomes: fn's result (or its error) after the lease is released;
 * LockWaitTimeoutError if the lock stayed held for waitMs; STORE_UNAVAILABLE if the backend failed
 * while acquiring. While fn runs the lease is renewed every ttlMs/3, so it cannot run out mid-call
 * (DESIGN.md §5: an expired refresh lock lets a second replica replay a rotated refresh token);
 * `signal` aborts if a renewal finds the lease lost, or when renewals have failed for so long
 * that the lease is about to run out (the store stopped answering this replica, perhaps only
 * this one): fn must then stop what the lock protects. A holder that dies is taken over after ttlMs.
 */
export async function withLock<T>(
  lock: StoreLock,
  key: string,
  fn: (signal: AbortSignal) => Promise<T>,
  opts: { ttlMs: number; waitMs: number; pollMs?: number },
): Promise<T> {
  const { ttlMs, waitMs, pollMs = 50 } = opts
  const giveUpAt = Date.now() + waitMs
  // Times are taken before each call: the lease the store grants ends no earlier than that + ttlMs.
  let askedAt = Date.now()
  let owner = await lock.acquire(key, ttlMs)
  while (owner === undefined) {
    const remaining = giveUpAt - Date.now()
    if (remaining <= 0) throw new LockWaitTimeoutError(waitMs)
    await new Promise((resolve) => setTimeout(resolve, Math.min(pollMs, remaining)))
    askedAt = Date.now()
    owner = await lock.acquire(key, ttlMs)
  }
  const held = owner
  const lost = new AbortController()
  let timer: NodeJS.Timeout | undefined
  // Fires a fifth of the ttl before the lease could end unless a renewal pushes it back: renewals
  // that keep failing (or hang) must not let fn run on past the lease unawares.
  let deadline: NodeJS.Timeout | undefined
  const armDeadline = (grantedAt: number) => {
    clearTimeout(deadline)
    deadline = setTimeout(() => {
      lost.abort(new Error('The lock lease could not be renewed in time'))
      clearTimeout(timer)
      timer = undefined
    }, Math.max(grantedAt + ttlMs - ttlMs / 5 - Date.now(), 0))
  }
  armDeadline(askedAt)
  // A chain of timeouts, not an interval: a slow renewal never overlaps the next one.
  const scheduleRenewal = () => {
    timer = setTimeout(async () => {
      const renewing = Date.now()
      try {
        if (!(await lock.renew(key, held, ttlMs))) {
          lost.abort(new Error('The lock lease was lost'))
          clearTimeout(deadline)
          return
        }
        if (!lost.signal.aborted) armDeadline(renewing)
      } catch {
        // The backend is unreachable: try again next tick; the deadline aborts fn if none succeeds in time.
      }
      if (timer !== undefined) scheduleRenewal()
    }, ttlMs / 3)
  }
  scheduleRenewal()
  try {
    return await fn(lost.signal)
  } finally {
    clearTimeout(timer)
    clearTimeout(deadline)
    timer = undefined
    try {
      await lock.release(key, held)
    } catch {
      // Safe to drop: an unreleased lease ends by itself after ttlMs; fn's outcome matters more.
    }
  }
}

export function createMemoryLock(now: () => number = Date.now): StoreLock {
  const leases = new Map<string, { owner: string; expiresAt: number }>()
  return {
    async acquire(key, ttlMs) {
      const lease = leases.get(key)
      if (lease !== undefined && lease.expiresAt > now()) return undefined
      const owner = randomUUID()
      leases.set(key, { owner, expiresAt: now() + ttlMs })
      return owner
    },
    async renew(key, owner, ttlMs) {
      const lease = leases.get(key)
      if (lease === undefined || lease.owner !== owner || lease.expiresAt <= now()) return false
      lease.expiresAt = now() + ttlMs
      return true
    },
    async release(key, owner) {
      if (leases.get(key)?.owner === owner) leases.delete(key)
    },
  }
}

// A lease row, not SQLite's file lock: processes sharing the file need a lock that outlives one
// statement, with an owner and an expiry. Time is JavaScript's: every process is on this machine.
const LEASE_TABLE = 'CREATE TABLE IF NOT EXISTS relay_locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL)'

export function createSqliteLock(db: DatabaseSync, keyPrefix: string): StoreLock {
  db.exec(LEASE_TABLE)
  const leaseKey = (key: string) => `${keyPrefix}${key}`
  const take = db.prepare(`INSERT INTO relay_locks (key, owner, expires_at) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
    WHERE relay_locks.expires_at <= ? RETURNING owner`)
  const extend = db.prepare('UPDATE relay_locks SET expires_at = ? WHERE key = ? AND owner = ? AND expires_at > ?')
  const drop = db.prepare('DELETE FROM relay_locks WHERE key = ? AND owner = ?')
  return {
    acquire: (key, ttlMs) =>
      callStore('sqlite', () => {
        const now = Date.now()
        // all(), not get(): get() drops the error of a commit the file refused (sqlite-store.ts).
        const [row] = take.all(leaseKey(key), randomUUID(), now + ttlMs, now)
        return row === undefined ? undefined : (row.owner as string)
      }),
    renew: (key, owner, ttlMs) =>
      callStore('sqlite', () => {
        const now = Date.now()
        return extend.run(now + ttlMs, leaseKey(key), owner, now).changes === 1
      }),
    release: (key, owner) =>
      callStore('sqlite', () => {
        drop.run(leaseKey(key), owner)
      }),
  }
}

// Redis: SET NX PX takes a free or expired lease (Redis expires it); renew and release compare the
// owner and act in one Lua script, so no other client can slip in between the check and the write.
const RENEW_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`
const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`

export function createRedisLock(client: RedisClient, keyPrefix: string): StoreLock {
  const leaseKey = (key: string) => `${keyPrefix}${key}`
  return {
    acquire: (key, ttlMs) =>
      callStore('redis', async () => {
        const owner = randomUUID()
        const reply = await client.set(leaseKey(key), owner, { condition: 'NX', expiration: { type: 'PX', value: Math.ceil(ttlMs) } })
        return reply === 'OK' ? owner : undefined
      }),
    renew: (key, owner, ttlMs) =>
      callStore('redis', async () => {
        const reply = await client.eval(RENEW_SCRIPT, { keys: [leaseKey(key)], arguments: [owner, String(Math.ceil(ttlMs))] })
        return reply === 1
      }),
    release: (key, owner) =>
      callStore('redis', async () => {
        await client.eval(RELEASE_SCRIPT, { keys: [leaseKey(key)], arguments: [owner] })
      }),
  }
}

// PostgreSQL: a lease row, not pg_advisory_lock. An advisory lock belongs to one session, i.e. one
// pooled connection: it would pin that connection for the whole refresh, be released by whichever
// query happens to reuse the connection, and vanish silently if the connection drops. A row has
// an owner and an expiry every replica can see. Time is the database's, so replicas' clocks can differ.
export const POSTGRES_LEASE_TABLE =
  'CREATE TABLE IF NOT EXISTS relay_locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at BIGINT NOT NULL)'
const DB_NOW = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint'

export function createPostgresLock(query: (sql: string, values: unknown[]) => Promise<unknown[]>, keyPrefix: string): StoreLock {
  const leaseKey = (key: string) => `${keyPrefix}${key}`
  return {
    acquire: (key, ttlMs) =>
      callStore('postgres', async () => {
        const owner = randomUUID()
        const rows = await query(
          `INSERT INTO relay_locks (key, owner, expires_at) VALUES ($1, $2, ${DB_NOW} + $3)
           ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
           WHERE relay_locks.expires_at <= excluded.expires_at - $3 RETURNING owner`,
          [leaseKey(key), owner, Math.ceil(ttlMs)],
        )
        return rows.length === 1 ? owner : undefined
      }),
    renew: (key, owner, ttlMs) =>
      callStore('postgres', async () => {
        const rows = await query(
          `UPDATE relay_locks SET expires_at = ${DB_NOW} + $3
           WHERE key = $1 AND owner = $2 AND expires_at > ${DB_NOW} RETURNING owner`,
          [leaseKey(key), owner, Math.ceil(ttlMs)],
        )
        return rows.length === 1
      }),
    release: (key, owner) =>
      callStore('postgres', async () => {
        await query('DELETE FROM relay_locks WHERE key = $1 AND owner = $2', [leaseKey(key), owner])
      }),
  }
}
