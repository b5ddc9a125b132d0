import { randomUUID } from 'node:crypto'
import { resolve } from 'node:path'
import KeyvRedis from '@keyv/redis'
import { Keyv, type KeyvStoreAdapter } from 'keyv'
import { createMemoryFileBudget, createPostgresFileBudget, createRedisFileBudget, createSqliteFileBudget, type FileBudget } from './file-budget.ts'
import { createMemoryLock, createPostgresLock, createRedisLock, createSqliteLock, type StoreLock } from './lock.ts'
import { createPostgresBackend } from './postgres-store.ts'
import { createRedisClient } from './redis-client.ts'
import { memoizeDeserialize } from './parse-memo.ts'
import { openSqliteDatabase, selectSqliteKeys, SqliteStore, sweepSqliteStore } from './sqlite-store.ts'
import { silentLogger, type StoreLogger } from './store-logger.ts'
import { callStore, guardAdapter, STORE_TIMEOUT_MS, type StoreKind } from './store-unavailable.ts'
import { createKeyRangeIndex, createRedisTokenIndex, selectMapKeys, type TokenIndex } from './token-index.ts'

export type { StoreKind } from './store-unavailable.ts'

export const NAMESPACE_NAMES = ['tokens', 'service-tokens', 'clients', 'discovery', 'tickets', 'flows', 'pending', 'tools', 'steps', 'files', 'eras', 'inputs', 'identities', 'pending-identities'] as const
export type NamespaceName = (typeof NAMESPACE_NAMES)[number]

/**
 * How often expired entries that nobody reads again are removed (Keyv removes an expired entry only
 * when it is read; Redis expires keys by itself). Kept files are the reason it is often: they are
 * large, live 10 minutes, and the per-tenant budget counts them only while they live.
 */
export const SWEEP_EVERY_MS = 60_000

/** Namespaces read on every warm call whose readers never change what they read: their parses are remembered. */
const MEMOIZED_NAMESPACES: ReadonlySet<NamespaceName> = new Set(['discovery', 'tools'])

export interface RelayStore {
  readonly kind: StoreKind
  /** One Keyv per namespace, created once. Its calls throw RelayError STORE_UNAVAILABLE on a backend failure. */
  namespace(name: NamespaceName): Keyv
  lock: StoreLock
  /** The `tokens` namespace's keys in order (token-index.ts); the token store keeps it. */
  readonly tokenIndex: TokenIndex
  /** What each tenant keeps in `files`, counted for FILES_MAX_MB_PER_TENANT on every replica (file-budget.ts). */
  readonly fileBudget: FileBudget
  /** Removes what expired and nobody read again; runs every SWEEP_EVERY_MS until close(). */
  sweep(): Promise<void>
  /** Resolves when the backend answers; throws RelayError STORE_UNAVAILABLE otherwise, within ~2 s. */
  ping(): Promise<void>
  close(): Promise<void>
}

export interface OpenStoreOptions {
  logger?: StoreLogger
  /** Separates this relay's keys from others sharing the backend (and one test run from another). */
  keyPrefix?: string
}

/** The backend a STORE_URL names, and for SQLite the absolute database path. Never echoes the URL (it may hold a password). */
export function parseStoreUrl(url: string): { kind: StoreKind; path?: string } {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase()
  switch (scheme) {
    case 'memory':
      return { kind: 'memory' }
    case 'sqlite': {
      const path = url.slice('sqlite://'.length)
      if (path === '') throw new Error('STORE_URL sqlite:// needs a file path, e.g. sqlite://./data/relay.sqlite')
      return { kind: 'sqlite', path: resolve(path) }
    }
    case 'redis':
    case 'rediss':
      return { kind: 'redis' }
    case 'postgres':
    case 'postgresql':
      return { kind: 'postgres' }
    default:
      throw new Error('STORE_URL must start with sqlite://, memory://, redis://, rediss://, postgres:// or postgresql://')
  }
}

interface Backend {
  createAdapter(): KeyvStoreAdapter | Map<string, unknown>
  /** Keyv prefixes keys with the namespace itself unless the adapter does (only @keyv/redis does). */
  adapterPrefixesKeys: boolean
  lock: StoreLock
  /** The index of `${keyPrefix}/tokens`; `keyv` is that namespace's Keyv (the memory store lists its Map). */
  tokenIndex(keyPrefix: string, keyv: () => Keyv): TokenIndex
  fileBudget(keyPrefix: string): FileBudget
  /** Removes the entries expired at `now` that the backend does not expire by itself. */
  sweep(now: number): Promise<void>
  ping(): Promise<void>
  close(): Promise<void>
}

async function openBackend(url: string, kind: StoreKind, path: string | undefined, lockPrefix: string, logger: StoreLogger): Promise<Backend> {
  switch (kind) {
    case 'memory': {
      const maps: Array<Map<string, unknown>> = []
      const budget = createMemoryFileBudget()
      return {
        createAdapter: () => {
          const map = new Map<string, unknown>()
          maps.push(map)
          return map
        },
        adapterPrefixesKeys: false,
        lock: createMemoryLock(),
        tokenIndex: (keyPrefix, keyv) => createKeyRangeIndex(`${keyPrefix}/tokens`, selectMapKeys(() => keyv().store as Map<string, unknown>)),
        fileBudget: () => budget,
        sweep: async (now) => {
          for (const map of maps) {
            for (const [key, value] of map) {
              if (expiryOf(value) <= now) map.delete(key)
            }
          }
        },
        ping: async () => undefined,
        close: async () => undefined,
      }
    }
    case 'sqlite': {
      const db = openSqliteDatabase(path!)
      const lock = createSqliteLock(db, lockPrefix)
      // Readiness is being able to write: a database file that turned read-only (or a full
      // volume) still answers SELECT while every sign-in and refresh fails. The probe row is an
      // expired lease nobody waits for; its owner changes each time because SQLite skips
      // writing a row rewritten with identical content, which would prove nothing.
      const probe = db.prepare(`INSERT INTO relay_locks (key, owner, expires_at) VALUES (?, ?, 0)
        ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = 0`)
      return {
        createAdapter: () => guardAdapter(new SqliteStore(db, `sqlite://${path}`), kind),
        adapterPrefixesKeys: false,
        lock,
        tokenIndex: (keyPrefix) => {
          const select = selectSqliteKeys(db)
          return createKeyRangeIndex(`${keyPrefix}/tokens`, (...range) => callStore(kind, () => select(...range)))
        },
        fileBudget: (keyPrefix) => createSqliteFileBudget(db, `${keyPrefix}/`),
        sweep: (now) => sweepSqliteStore(db, now),
        ping: () => callStore(kind, () => void probe.run(`${lockPrefix}readiness`, randomUUID())),
        close: async () => {
          if (db.isOpen) db.close()
        },
      }
    }
    case 'redis': {
      let client: ReturnType<typeof createRedisClient>
      try {
        client = createRedisClient(url, logger)
      } catch {
        throw new Error('STORE_URL is not a valid redis:// URL') // the parser's message may quote the URL
      }
      // Every namespace's adapter below adds its own 'error' listener to this one shared client:
      // one each, plus the client's own, is expected and no leak (Node warns past 10).
      client.setMaxListeners(NAMESPACE_NAMES.length + 4)
      // Wait briefly for the first connection so requests right after start-up find it ready; a
      // Redis that is down does not stop start-up (readiness reports it) and is picked up later.
      let closed = false
      const connecting = client.connect().catch((error: unknown) => {
        if (!closed) logger.warn({ kind, err: error }, 'store connection failed')
      })
      await Promise.race([connecting, new Promise((done) => setTimeout(done, STORE_TIMEOUT_MS).unref())])
      return {
        createAdapter: () =>
          guardAdapter(
            // throwOnErrors: by default @keyv/redis answers a failed get with undefined ("no token").
            new KeyvRedis(client, { throwOnErrors: true, throwOnConnectError: true }),
            kind,
          ),
        adapterPrefixesKeys: true,
        lock: createRedisLock(client, lockPrefix),
        tokenIndex: (keyPrefix) => createRedisTokenIndex(client, `${keyPrefix}/tokens`, `${keyPrefix}/index:tokens`),
        fileBudget: (keyPrefix) => createRedisFileBudget(client, `${keyPrefix}/files-budget:`),
        // Keys carry their TTL (@keyv/redis sets PX): Redis removes them itself.
        sweep: async () => undefined,
        ping: () => callStore(kind, async () => void (await client.ping())),
        close: async () => {
          closed = true
          if (client.isReady) await client.close()
          else if (client.isOpen) client.destroy()
        },
      }
    }
    case 'postgres': {
      const backend = createPostgresBackend(url, logger)
      return {
        createAdapter: () => guardAdapter(backend.createAdapter(), kind),
        adapterPrefixesKeys: false,
        lock: createPostgresLock(backend.query, lockPrefix),
        tokenIndex: (keyPrefix) => createKeyRangeIndex(`${keyPrefix}/tokens`, (...range) => callStore(kind, () => backend.selectKeys(...range))),
        fileBudget: (keyPrefix) => createPostgresFileBudget(backend, `${keyPrefix}/`),
        sweep: () => backend.sweepExpired(),
        ping: () => callStore(kind, backend.ping),
        close: backend.close,
      }
    }
  }
}

/**
 * The expiry Keyv serialized at the end of a memory entry (`{"value":…,"expires":<ms>}`), read from
 * its last characters only: an entry can be a kept file of several MiB. Infinity when it has none.
 */
function expiryOf(entry: unknown): number {
  const tail = typeof entry === 'string' ? /"expires":(\d+)\}$/.exec(entry.slice(-40)) : null
  return tail ? Number(tail[1]) : Infinity
}

/**
 * Opens the store STORE_URL names: `memory://`, `sqlite://PATH` (relative to the working
 * directory; the directory is created), `redis://…`/`rediss://…`, `postgres://…`/`postgresql://…`.
 * A shared backend that is down does not fail this call: its operations throw STORE_UNAVAILABLE
 * until it answers again. A malformed URL throws an Error naming STORE_URL.
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<RelayStore> {
  const { kind, path } = parseStoreUrl(url)
  const logger = options.logger ?? silentLogger
  const keyPrefix = options.keyPrefix ?? 'relay'
  if (!/^[A-Za-z0-9.-]+$/.test(keyPrefix)) throw new Error('keyPrefix may hold only letters, digits, . and -')
  const backend = await openBackend(url, kind, path, `${keyPrefix}/lock:`, logger)

  const namespaces = new Map<NamespaceName, Keyv>()
  function namespace(name: NamespaceName): Keyv {
    let keyv = namespaces.get(name)
    if (keyv === undefined) {
      if (!NAMESPACE_NAMES.includes(name)) throw new Error(`Unknown store namespace: ${String(name)}`)
      keyv = new Keyv({
        store: backend.createAdapter(),
        // '/' keeps the namespace from ever being a prefix of a storeKey() (see keys.ts): Keyv does
        // not prefix a key that already starts with `${namespace}:`, which would let two keys meet.
        namespace: `${keyPrefix}/${name}`,
        useKeyPrefix: !backend.adapterPrefixesKeys,
        // Keyv 5 otherwise answers a failed get with undefined and a failed set/delete with false.
        throwOnErrors: true,
      })
      if (MEMOIZED_NAMESPACES.has(name) && keyv.deserialize) keyv.deserialize = memoizeDeserialize(keyv.deserialize)
      namespaces.set(name, keyv)
    }
    return keyv
  }

  const fileBudget = backend.fileBudget(keyPrefix)
  let sweeping: Promise<void> | undefined
  const sweep = () =>
    (sweeping ??= (async () => {
      const now = Date.now()
      await backend.sweep(now)
      await fileBudget.sweep(now)
    })().finally(() => (sweeping = undefined)))
  const sweeper = setInterval(() => {
    sweep().catch((error: unknown) => logger.warn({ kind, err: error }, 'expired entries sweep failed'))
  }, SWEEP_EVERY_MS)
  sweeper.unref()

  let closing: Promise<void> | undefined
  return {
    kind,
    namespace,
    lock: backend.lock,
    tokenIndex: backend.tokenIndex(keyPrefix, () => namespace('tokens')),
    fileBudget,
    sweep,
    ping: backend.ping,
    close: () =>
      (closing ??= (async () => {
        clearInterval(sweeper)
        // A sweep under way finishes before the backend it uses goes away; its failure is for
        // whoever started it to report (the interval above logs its own).
        await sweeping?.catch(() => undefined)
        await backend.close()
      })()),
  }
}
