import KeyvPostgres from '@keyv/postgres'
import pg from 'pg'
import { POSTGRES_BUDGET_SCHEMA } from './file-budget.ts'
import { POSTGRES_LEASE_TABLE } from './lock.ts'
import type { SelectKeys } from './token-index.ts'
import type { StoreLogger } from './store-logger.ts'
import { STORE_TIMEOUT_MS } from './store-unavailable.ts'

/**
 * A bound on one sweep, on its own connection: far above the 2 s of request queries, because
 * removing large rows takes long (100 expired 12 MiB files, 2.2 GB: from 1 s to 9 s here,
 * depending on the machine's load) and no request waits for it.
 */
const SWEEP_TIMEOUT_MS = 5 * 60_000

type Query = (sql: string, values?: unknown[]) => Promise<any[]>

/**
 * @keyv/postgres 2.2.3 with three fixes, each for a behaviour checked in its source:
 * - it keeps one module-global pool per URI and ends it on any adapter's disconnect(), which would
 *   break the other namespaces (and any other store in the process): here every adapter runs its
 *   queries on the store's own small pool, handed over in `opts.run`, and disconnect() leaves it;
 * - its delete() is SELECT then DELETE, so two concurrent deletes of one key both return true: a
 *   single DELETE … RETURNING decides instead (the single-use "take" of an OAuth state needs it);
 * - it creates its table once, at construction, and never again if the server was down then: `run`
 *   makes sure of the schema before each query until that has once succeeded;
 * - it keeps a row's expiry only inside the serialized value, so finding expired rows meant
 *   reading every value (below): set() also writes it to an `expires` column.
 */
class RelayPostgresAdapter extends KeyvPostgres {
  constructor(table: string, run: Query) {
    super({ table, run } as ConstructorParameters<typeof KeyvPostgres>[0])
    // A background failure (the constructor's CREATE TABLE while the server is down) is emitted,
    // and an EventEmitter with no 'error' listener throws; callers see failures as thrown errors.
    this.on('error', () => undefined)
  }

  override async connect() {
    return (this.opts as { run: Query }).run
  }

  override async set(key: string, value: string, ttl?: number): Promise<void> {
    await this.query(
      `INSERT INTO ${this.opts.table} (key, value, expires) VALUES ($1, $2, $3)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
      [key, value, expiresOf(ttl)],
    )
  }

  override async setMany(entries: Array<{ key: string; value: string; ttl?: number }>): Promise<void> {
    await this.query(
      `INSERT INTO ${this.opts.table} (key, value, expires) SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
      [entries.map((entry) => entry.key), entries.map((entry) => entry.value), entries.map((entry) => expiresOf(entry.ttl))],
    )
  }

  override async delete(key: string): Promise<boolean> {
    const rows = await this.query(`DELETE FROM ${this.opts.table} WHERE key = $1 RETURNING key`, [key])
    return rows.length > 0
  }

  override async disconnect() {
    // The pool belongs to the store; RelayStore.close() ends it once for every namespace.
  }
}

/** As Keyv computes the expiry it serializes into the value (Date.now() + ttl). */
function expiresOf(ttl: number | undefined): number | null {
  return typeof ttl === 'number' && ttl > 0 ? Date.now() + ttl : null
}

/**
 * The rows of `tokens` namespaces (`<prefix>/tokens:<key>`: no other namespace name ends in
 * `/tokens`, and storeKey() escapes '/'), indexed in byte order: the primary key's order follows
 * the database's collation, which for most locales is not byte order, and the admin list must
 * come out in the same order on every backend. Partial, so other namespaces' writes do not pay for it.
 */
const TOKEN_ROWS = `key LIKE '%/tokens:%'`

/**
 * One pool for every namespace and the lock table, kept small (max 4). Failure handling:
 * connecting gives up after 1.5 s and each query after STORE_TIMEOUT_MS, so a server that is down
 * or unreachable fails fast; the pool opens fresh connections on demand, so it recovers by itself.
 */
export function createPostgresBackend(url: string, logger: StoreLogger, table = 'relay_kv') {
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    connectionTimeoutMillis: 1500,
    idleTimeoutMillis: 30_000,
    query_timeout: STORE_TIMEOUT_MS,
    statement_timeout: STORE_TIMEOUT_MS,
  })
  // An idle connection that dies (a server restart) is reported here; the pool has already dropped
  // it. Without a listener the process would crash.
  pool.on('error', (error) => logger.warn({ kind: 'postgres', err: error }, 'store connection lost'))

  // Set when this process added the `expires` column to a table written by an older relay: its rows
  // then get their expiry from their values once, in the background (sweepExpired).
  let addedExpiresColumn = false
  const createSchema = async () => {
    await pool.query(
      `CREATE TABLE IF NOT EXISTS ${table} (key TEXT PRIMARY KEY, value TEXT, expires BIGINT); ${POSTGRES_LEASE_TABLE}; ${POSTGRES_BUDGET_SCHEMA}`,
    )
    // Looked up first: ALTER TABLE takes an exclusive lock even when the column exists, and
    // behind a long sweep that lock would queue every query of every replica.
    const column = await pool.query(
      `SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'expires'`,
      [table],
    )
    if (column.rows.length === 0) {
      await pool.query(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS expires BIGINT`)
      addedExpiresColumn = true
    }
  }
  let schema: Promise<void> | undefined
  const ensureSchema = () =>
    (schema ??= (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await createSchema()
        } catch (error) {
          // Two replicas creating the same table at once: the loser sees unique_violation on
          // pg_type, and its statements roll back together; the next try finds the table made.
          const code = (error as { code?: string }).code
          if (attempt < 3 && (code === '23505' || code === '42P07')) continue
          throw error
        }
      }
    })().catch((error: unknown) => {
      schema = undefined
      throw error
    }))

  const query: Query = async (sql, values) => {
    await ensureSchema()
    return (await pool.query(sql, values)).rows
  }

  /** A client of its own, without the 2 s bound of request queries, for work no request waits for. */
  async function withOwnConnection<T>(work: (client: pg.Client) => Promise<T>, statementTimeoutMs?: number): Promise<T> {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: 1500,
      ...(statementTimeoutMs ? { statement_timeout: statementTimeoutMs } : {}),
    })
    client.on('error', () => undefined) // a connection lost mid-query: the query rejects with it
    await client.connect()
    try {
      return await work(client)
    } finally {
      await client.end()
    }
  }

  // Keyv removes an expired row only when it is read, so rows nobody reads again (abandoned
  // sign-ins, files never fetched) are removed here, by the `expires` column and its index. The
  // sweep this replaces matched a regular expression against every value: it read the whole
  // table each time and, with 100 expired 12 MiB files (2.2 GB), ran past the 2 s statement
  // timeout on every try, so large rows were never removed (47 s when given the time).
  const sweepExpired = async () => {
    await ensureSchema()
    void ensureIndexes() // its first try may have failed (the server was down or slow at start)
    await withOwnConnection(async (client) => {
      if (addedExpiresColumn) {
        // Rows an older relay wrote carry their expiry only in their value: read it out once.
        await client.query(
          `UPDATE ${table} SET expires = substring(value FROM '"expires":([0-9]+)\\}$')::bigint WHERE expires IS NULL AND value LIKE '%"expires":%'`,
        )
        addedExpiresColumn = false
      }
      await client.query(`DELETE FROM ${table} WHERE expires <= $1`, [Date.now()])
    }, SWEEP_TIMEOUT_MS)
  }

  const transaction = async <T>(work: (query: Query) => Promise<T>): Promise<T> => {
    await ensureSchema()
    const client = await pool.connect()
    let broken = false
    try {
      await client.query('BEGIN')
      const result = await work(async (sql, values) => (await client.query(sql, values)).rows)
      await client.query('COMMIT')
      return result
    } catch (error) {
      // A failed ROLLBACK means the connection is gone or unusable: it is destroyed, not pooled again.
      await client.query('ROLLBACK').catch(() => (broken = true))
      throw error
    } finally {
      client.release(broken)
    }
  }

  // The indexes are built once per process in the background, CONCURRENTLY and on a connection of
  // their own without the 2 s statement timeout: on a large table of a relay upgraded in place,
  // building them inside the schema statement would block every write and outlast the timeout,
  // failing each query that waits for the schema. Until they exist, listing sorts instead and the
  // sweep scans the table (its rows, not the large values stored apart from them).
  let indexing: Promise<void> | undefined
  const ensureIndexes = () =>
    (indexing ??= (async () => {
      await ensureSchema()
      await withOwnConnection(async (client) => {
        await client.query(
          `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${table}_token_keys ON ${table} (key COLLATE "C") WHERE ${TOKEN_ROWS}`,
        )
        await client.query(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${table}_expires ON ${table} (expires) WHERE expires IS NOT NULL`)
      })
    })().catch((error: unknown) => {
      indexing = undefined
      logger.warn({ kind: 'postgres', err: error }, 'store indexes not built yet; the admin list sorts instead')
    }))
  void ensureIndexes()

  // Token keys in byte order (token-index.ts), a range scan of the partial index above.
  const selectKeys: SelectKeys = async (from, below, after, limit) => {
    void ensureIndexes()
    return (
      await query(
        `SELECT key FROM ${table} WHERE ${TOKEN_ROWS} AND key COLLATE "C" >= $1 AND key COLLATE "C" < $2 AND key COLLATE "C" > $3
         ORDER BY key COLLATE "C" LIMIT $4`,
        [from, below, after, limit],
      )
    ).map((row: { key: string }) => row.key)
  }

  return {
    query,
    transaction,
    selectKeys,
    sweepExpired,
    createAdapter: () => new RelayPostgresAdapter(table, query),
    ping: async () => {
      await pool.query('SELECT 1')
    },
    close: async () => {
      await indexing
      await pool.end()
    },
  }
}
