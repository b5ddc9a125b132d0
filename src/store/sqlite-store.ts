import { EventEmitter } from 'node:events'
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import type { KeyvStoreAdapter, StoredData } from 'keyv'
import type { SelectKeys } from './token-index.ts'

/** How long a write waits for another process's write lock before failing (SQLITE_BUSY). */
const BUSY_TIMEOUT_MS = 1000
const KV_TABLE = 'relay_kv'

/**
 * Opens (creating it and its directory) the SQLite file shared by the Keyv namespaces and the lock
 * table. WAL lets readers run beside a writer, so several processes can share the file. The busy
 * wait is synchronous in `node:sqlite`, hence short: it blocks the event loop while it lasts.
 */
export function openSqliteDatabase(path: string): DatabaseSync {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
  const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS })
  db.exec('PRAGMA journal_mode = WAL')
  db.exec('PRAGMA synchronous = NORMAL')
  db.exec(`CREATE TABLE IF NOT EXISTS ${KV_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER)`)
  // The sweep finds expired rows here: `expires` comes after the value in each row, so without the
  // index reading it means reading through every large value (a kept file) in the table.
  db.exec(`CREATE INDEX IF NOT EXISTS ${KV_TABLE}_expires ON ${KV_TABLE} (expires) WHERE expires IS NOT NULL`)
  return db
}

/** How long the sweep may hold the event loop before it lets other work run. */
const SWEEP_SLICE_MS = 10

/**
 * Removes the rows expired at `now` that nobody read again (a read removes them anyway). One row per
 * statement, yielding to the event loop every SWEEP_SLICE_MS: `node:sqlite` runs on the event loop,
 * and freeing a large row's pages takes a while — one DELETE of 100 expired 12 MiB files held it
 * for 3 s here; row by row the longest hold was 56 ms (0.46 s on a machine loaded five times over:
 * one such row's pages, which no statement can split).
 */
export async function sweepSqliteStore(db: DatabaseSync, now: number): Promise<void> {
  const next = db.prepare(`SELECT key FROM ${KV_TABLE} WHERE expires <= ? LIMIT 1`)
  const remove = db.prepare(`DELETE FROM ${KV_TABLE} WHERE key = ? AND expires <= ?`)
  let sliceStart = performance.now()
  for (let row = next.get(now); row !== undefined; row = next.get(now)) {
    remove.run(row.key as string, now)
    if (performance.now() - sliceStart > SWEEP_SLICE_MS) {
      await new Promise((resolve) => setImmediate(resolve))
      if (!db.isOpen) return
      sliceStart = performance.now()
    }
  }
}

/**
 * Key-ordered range scans over the primary key (token-index.ts). BINARY collation: byte order.
 * Expired rows are left out, as get() leaves them out.
 */
export function selectSqliteKeys(db: DatabaseSync): SelectKeys {
  const select = db.prepare(`SELECT key FROM ${KV_TABLE} WHERE key >= ? AND key < ? AND key > ?
    AND (expires IS NULL OR expires > ?) ORDER BY key LIMIT ?`)
  return async (from, below, after, limit) => select.all(from, below, after, Date.now(), limit).map((row) => row.key as string)
}

/**
 * A Keyv storage adapter over the built-in `node:sqlite` (no native build, unlike @keyv/sqlite).
 * Expiry is kept in a column and compared with `Date.now()` in JavaScript, not SQL time, so one
 * clock (and a frozen test clock) governs both Keyv and the table. Expired rows are swept by the
 * store (sweepSqliteStore). Several adapters (one per namespace) share one database; `disconnect` leaves it open.
 */
export class SqliteStore extends EventEmitter implements KeyvStoreAdapter {
  // Keyv only uses an adapter's iterator when `opts` names a dialect it knows.
  readonly opts: { dialect: 'sqlite'; url: string }
  namespace?: string | undefined
  readonly #db: DatabaseSync
  // Prepared once: preparing on every call cost 15-35 µs of a warm tool call (npm run bench).
  readonly #select: StatementSync
  readonly #upsert: StatementSync
  readonly #remove: StatementSync

  constructor(db: DatabaseSync, url = 'sqlite://') {
    super()
    this.#db = db
    this.opts = { dialect: 'sqlite', url }
    this.#select = db.prepare(`SELECT value, expires FROM ${KV_TABLE} WHERE key = ?`)
    this.#upsert = db.prepare(`INSERT INTO ${KV_TABLE} (key, value, expires) VALUES (?, ?, ?)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`)
    this.#remove = db.prepare(`DELETE FROM ${KV_TABLE} WHERE key = ? RETURNING expires`)
  }

  // Values are the strings Keyv serialized; the generic signature is Keyv's adapter contract.
  async get<Value>(key: string): Promise<StoredData<Value>> {
    const row = this.#select.get(key)
    return row === undefined || isExpired(row.expires) ? undefined : (row.value as StoredData<Value>)
  }

  async getMany<Value>(keys: string[]): Promise<Array<StoredData<Value>>> {
    return Promise.all(keys.map((key) => this.get<Value>(key)))
  }

  async set(key: string, value: string, ttl?: number): Promise<boolean> {
    const expires = typeof ttl === 'number' && ttl > 0 ? Date.now() + ttl : null
    this.#upsert.run(key, value, expires)
    return true
  }

  // One DELETE decides: of two concurrent deletes of a key, only one sees a row (a single-use "take").
  // all(), not get(): get() stops at the first RETURNING row and node:sqlite drops the error of
  // the commit that follows, so a delete the file refused (read-only, disk full) read as done.
  async delete(key: string): Promise<boolean> {
    const [row] = this.#remove.all(key)
    return row !== undefined && !isExpired(row.expires)
  }

  async deleteMany(keys: string[]): Promise<boolean> {
    const results = await Promise.all(keys.map((key) => this.delete(key)))
    return results.some(Boolean)
  }

  async has(key: string): Promise<boolean> {
    return (await this.get(key)) !== undefined
  }

  async clear(): Promise<void> {
    this.#db.prepare(`DELETE FROM ${KV_TABLE} WHERE key LIKE ? ESCAPE '\\'`).run(`${likePrefix(this.namespace)}%`)
  }

  async *iterator(namespace?: string): AsyncGenerator<[string, string], void> {
    const rows = this.#db
      .prepare(`SELECT key, value, expires FROM ${KV_TABLE} WHERE key LIKE ? ESCAPE '\\' ORDER BY key`)
      .all(`${likePrefix(namespace)}%`)
    for (const row of rows) {
      if (!isExpired(row.expires)) yield [row.key as string, row.value as string]
    }
  }

  async disconnect(): Promise<void> {
    // The database belongs to whoever opened it (openStore closes it once, for every namespace).
  }
}

function isExpired(expires: unknown): boolean {
  return typeof expires === 'number' && expires <= Date.now()
}

// Keyv stores `${namespace}:${key}`; LIKE needs the namespace's own % and _ escaped.
function likePrefix(namespace: string | undefined): string {
  return namespace ? `${namespace.replace(/[\\%_]/g, '\\$&')}:` : ''
}
