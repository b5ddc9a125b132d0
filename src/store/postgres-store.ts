import KeyvPostgres from '@keyv/postgres'
import pg from 'pg'
import { POSTGRES_LEASE_TABLE } from './lock.ts'
import type { SelectKeys } from './token-index.ts'
import type { StoreLogger } from './store-logger.ts'
import { STORE_TIMEOUT_MS } from './store-unavailable.ts'

const SWEEP_EVERY_MS = 10 * 60_000

type Query = (sql: string, values?: unknown[]) => Promise<any[]>

/**
 * @keyv/postgres 2.2.3 with three fixes, each for a behaviour checked in its source:
 * - it keeps one module-global pool per URI and ends it on any adapter's disconnect(), which would
 *   break the other namespaces (and any other store in the process): here every adapter runs its
 *   queries on the store's own small pool, handed over in `opts.run`, and disconnect() leaves it;
 * - its delete() is SELECT then DELETE, so two concurrent deletes of one key both return true: a
 *   single DELETE … RETURNING decides instead (the single-use "take" of an OAuth state needs it);
 * - it creates its table once, at construction, and never again if the server was down then: `run`
 *   makes sure of the schema before each query until that has once succeeded.
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

  override async delete(key: string): Promise<boolean> {
    const rows = await this.query(`DELETE FROM ${this.opts.table} WHERE key = $1 RETURNING key`, [key])
    return rows.length > 0
  }

  override async disconnect() {
    // The pool belongs to the store; RelayStore.close() ends it once for every namespace.
  }
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

  let schema: Promise<void> | undefined
  const ensureSchema = () =>
    (schema ??= pool
      .query(`CREATE TABLE IF NOT EXISTS ${table} (key TEXT PRIMARY KEY, value TEXT); ${POSTGRES_LEASE_TABLE}`)
      .then(
        () => undefined,
        (error: { code?: string }) => {
          // Two replicas creating the table at once: the loser sees unique_violation on pg_type.
          if (error.code === '23505' || error.code === '42P07') return
          schema = undefined
          throw error
        },
      ))

  const query: Query = async (sql, values) => {
    await ensureSchema()
    return (await pool.query(sql, values)).rows
  }

  // Keyv keeps expiry inside the serialized value (`…,"expires":<ms>}`) and removes an expired row
  // only when it is read, so rows nobody reads again (abandoned sign-ins) are swept here.
  const sweep = () =>
    query(`DELETE FROM ${table} WHERE substring(value FROM '"expires":([0-9]+)\\}$')::bigint < $1`, [Date.now()]).catch(
      (error: unknown) => logger.warn({ kind: 'postgres', err: error }, 'expired entries sweep failed'),
    )
  let sweeping = sweep()
  const sweeper = setInterval(() => {
    sweeping = sweep()
  }, SWEEP_EVERY_MS)
  sweeper.unref()

  // The token-key index is built once per process in the background, CONCURRENTLY and on a
  // connection of its own without the 2 s statement timeout: on a large table of a relay upgraded
  // in place, building it inside the schema statement would block every write and outlast the
  // timeout, failing each query that waits for the schema. Until it exists, listing sorts instead.
  let indexing: Promise<void> | undefined
  const ensureTokenIndex = () =>
    (indexing ??= (async () => {
      await ensureSchema()
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 })
      client.on('error', () => undefined) // a connection lost mid-build: the query below rejects with it
      await client.connect()
      try {
        await client.query(
          `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${table}_token_keys ON ${table} (key COLLATE "C") WHERE ${TOKEN_ROWS}`,
        )
      } finally {
        await client.end()
      }
    })().catch((error: unknown) => {
      indexing = undefined
      logger.warn({ kind: 'postgres', err: error }, 'token key index not built yet; the admin list sorts instead')
    }))
  void ensureTokenIndex()

  // Token keys in byte order (token-index.ts), a range scan of the partial index above.
  const selectKeys: SelectKeys = async (from, below, after, limit) => {
    void ensureTokenIndex()
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
    selectKeys,
    createAdapter: () => new RelayPostgresAdapter(table, query),
    ping: async () => {
      await pool.query('SELECT 1')
    },
    close: async () => {
      clearInterval(sweeper)
      await Promise.all([sweeping, indexing])
      await pool.end()
    },
  }
}
