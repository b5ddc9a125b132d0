import { randomUUID } from 'node:crypto'
import type { DatabaseSync } from 'node:sqlite'
import { storeKey } from './keys.ts'
import type { RedisClient } from './redis-client.ts'
import { callStore } from './store-unavailable.ts'

/**
 * What each tenant keeps aside in the `files` namespace, counted where every replica sees it
 * (DESIGN.md §3 FILES_MAX_MB_PER_TENANT, §6: every kept file is bounded, per tenant too).
 *
 * A reservation is one atomic step on every backend — a Lua script on Redis, a transaction under
 * a per-tenant lock on PostgreSQL, a write transaction on SQLite, a synchronous update in memory —
 * that drops the tenant's expired reservations, sums the rest and adds this one only if the total
 * stays within the limit. So however many calls race on however many replicas, the unexpired
 * reservations of a tenant never add up to more than its limit. Expiry is judged on the clock of
 * the replica that reserves: replicas whose clocks differ by d may free a reservation up to d early.
 */
export interface FileBudget {
  /**
   * Counts `bytes` for `tenant` until `expiresAt` if, with the reservations still live at `now`,
   * they fit within `limitBytes`: true when counted, false when they do not fit (nothing counted).
   * Throws RelayError STORE_UNAVAILABLE when the backend fails.
   */
  reserve(tenant: string, bytes: number, terms: { limitBytes: number; now: number; expiresAt: number }): Promise<boolean>
  /** Forgets every reservation expired at `now`, for tenants that kept nothing since (the sweep). */
  sweep(now: number): Promise<void>
}

export function createMemoryFileBudget(): FileBudget {
  const reservations = new Map<string, Array<{ bytes: number; expiresAt: number }>>()
  const live = (tenant: string, now: number) => (reservations.get(tenant) ?? []).filter((reservation) => reservation.expiresAt > now)
  return {
    async reserve(tenant, bytes, { limitBytes, now, expiresAt }) {
      const kept = live(tenant, now)
      const fits = kept.reduce((total, reservation) => total + reservation.bytes, 0) + bytes <= limitBytes
      if (fits) kept.push({ bytes, expiresAt })
      if (kept.length > 0) reservations.set(tenant, kept)
      else reservations.delete(tenant)
      return fits
    },
    async sweep(now) {
      for (const tenant of [...reservations.keys()]) {
        const kept = live(tenant, now)
        if (kept.length > 0) reservations.set(tenant, kept)
        else reservations.delete(tenant)
      }
    },
  }
}

// SQLite and PostgreSQL: one row per reservation; `budget` is the key prefix and the tenant.
const BUDGET_TABLE = 'relay_file_budget'
const SQLITE_BUDGET_SCHEMA = `CREATE TABLE IF NOT EXISTS ${BUDGET_TABLE} (budget TEXT NOT NULL, bytes INTEGER NOT NULL, expires_at INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS ${BUDGET_TABLE}_by_budget ON ${BUDGET_TABLE} (budget, expires_at)`
export const POSTGRES_BUDGET_SCHEMA = `CREATE TABLE IF NOT EXISTS ${BUDGET_TABLE} (budget TEXT NOT NULL, bytes BIGINT NOT NULL, expires_at BIGINT NOT NULL);
  CREATE INDEX IF NOT EXISTS ${BUDGET_TABLE}_by_budget ON ${BUDGET_TABLE} (budget, expires_at)`

export function createSqliteFileBudget(db: DatabaseSync, keyPrefix: string): FileBudget {
  db.exec(SQLITE_BUDGET_SCHEMA)
  const forget = db.prepare(`DELETE FROM ${BUDGET_TABLE} WHERE budget = ? AND expires_at <= ?`)
  const total = db.prepare(`SELECT coalesce(sum(bytes), 0) AS total FROM ${BUDGET_TABLE} WHERE budget = ?`)
  const add = db.prepare(`INSERT INTO ${BUDGET_TABLE} (budget, bytes, expires_at) VALUES (?, ?, ?)`)
  const sweep = db.prepare(`DELETE FROM ${BUDGET_TABLE} WHERE expires_at <= ?`)
  return {
    reserve: (tenant, bytes, { limitBytes, now, expiresAt }) =>
      callStore('sqlite', () => {
        const budget = `${keyPrefix}${storeKey(tenant)}`
        // IMMEDIATE takes the write lock first: another process sharing the file waits (busy timeout) instead of reading a total that is about to change.
        db.exec('BEGIN IMMEDIATE')
        try {
          forget.run(budget, now)
          const fits = Number(total.get(budget)!.total) + bytes <= limitBytes
          if (fits) add.run(budget, bytes, expiresAt)
          db.exec('COMMIT')
          return fits
        } catch (error) {
          if (db.isTransaction) db.exec('ROLLBACK')
          throw error
        }
      }),
    sweep: (now) =>
      callStore('sqlite', () => {
        sweep.run(now)
      }),
  }
}

// Redis: a sorted set of reservations per tenant (score: expiry; member: "<bytes>:<nonce>") and
// the sum of its members beside it, updated together in one script so no other client slips in
// between the check and the add. Both keys expire with their newest reservation. A missing sum
// (evicted) is recounted from the set.
const RESERVE_SCRIPT = `
local now, bytes, limit, expiresAt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local total = tonumber(redis.call('GET', KEYS[2]))
if total then
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
    total = total - tonumber(string.match(member, '^(%d+):'))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
else
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  total = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    total = total + tonumber(string.match(member, '^(%d+):'))
  end
end
if total + bytes > limit then
  if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('SET', KEYS[2], total, 'KEEPTTL') else redis.call('DEL', KEYS[2]) end
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2] .. ':' .. ARGV[5])
redis.call('SET', KEYS[2], total + bytes)
local ttl = math.max(expiresAt - now, 1)
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
return 1`

export function createRedisFileBudget(client: RedisClient, keyPrefix: string): FileBudget {
  return {
    reserve: (tenant, bytes, { limitBytes, now, expiresAt }) =>
      callStore('redis', async () => {
        const keys = [`${keyPrefix}${storeKey(tenant)}:reservations`, `${keyPrefix}${storeKey(tenant)}:total`]
        const args = [now, bytes, limitBytes, expiresAt].map(String)
        return (await client.eval(RESERVE_SCRIPT, { keys, arguments: [...args, randomUUID()] })) === 1
      }),
    // Both keys expire by themselves with their newest reservation.
    sweep: async () => undefined,
  }
}

type Transaction = <T>(work: (query: (sql: string, values?: unknown[]) => Promise<any[]>) => Promise<T>) => Promise<T>

export function createPostgresFileBudget(
  deps: { transaction: Transaction; query: (sql: string, values?: unknown[]) => Promise<unknown[]> },
  keyPrefix: string,
): FileBudget {
  return {
    reserve: (tenant, bytes, { limitBytes, now, expiresAt }) =>
      callStore('postgres', () =>
        deps.transaction(async (query) => {
          const budget = `${keyPrefix}${storeKey(tenant)}`
          // A transaction-level advisory lock per tenant: released by COMMIT or ROLLBACK, so unlike
          // a session lock (lock.ts) it cannot outlive this transaction on a pooled connection.
          // Each statement after it reads anew (READ COMMITTED), so the sum includes whatever the
          // previous holder committed.
          await query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [budget])
          await query(`DELETE FROM ${BUDGET_TABLE} WHERE budget = $1 AND expires_at <= $2`, [budget, now])
          const added = await query(
            `INSERT INTO ${BUDGET_TABLE} (budget, bytes, expires_at)
             SELECT $1::text, $2::bigint, $3::bigint
             WHERE (SELECT coalesce(sum(bytes), 0) FROM ${BUDGET_TABLE} WHERE budget = $1::text) + $2::bigint <= $4::bigint RETURNING 1`,
            [budget, bytes, expiresAt, limitBytes],
          )
          return added.length === 1
        }),
      ),
    sweep: async (now) => {
      await deps.query(`DELETE FROM ${BUDGET_TABLE} WHERE expires_at <= $1`, [now])
    },
  }
}
