// Shared-store URLs that no other test run can see, for relays that run with the default key
// prefix (relay processes: main.ts has no key-prefix setting, and needs none). Each one is a
// place of its own on the machine's real Redis and PostgreSQL, emptied and given back at the end.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from '@keyv/redis'
import pg from 'pg'
import { POSTGRES_URL, REDIS_URL, postgresUrl } from './services.ts'

type RedisClient = ReturnType<typeof createRedisClient>
const createRedisClient = (url: string) => createClient({ url })

export const REDIS_HOST_URL = REDIS_URL.replace(/\/\d*$/, '')
export const POSTGRES_ADMIN_URL = POSTGRES_URL

export interface IsolatedStore {
  readonly kind: 'memory' | 'sqlite' | 'redis' | 'postgres'
  /** STORE_URL for relays of this run. */
  readonly url: string
  /** Removes everything the run stored and gives the place back. */
  release(): Promise<void>
}

const CLAIM_KEY = 'mcp-relay-test-claim'
const CLAIM_TTL_MS = 15 * 60_000

/**
 * A Redis logical database (1–15; 0 is left to everything else) claimed for this run with a
 * SET NX lease, so two runs on one machine never share one. The database is the run's alone, so
 * everything in it but the claim is removed when it is claimed (a crashed run's leftovers, once
 * that run's claim expired) and when it is given back, whatever key prefix the relays used.
 */
export async function claimRedisDatabase(): Promise<IsolatedStore> {
  const runId = randomBytes(8).toString('hex')
  for (let db = 1; db < 16; db++) {
    const url = `${REDIS_HOST_URL}/${db}`
    const client = createRedisClient(url)
    await client.connect()
    try {
      const claimed = await client.set(CLAIM_KEY, runId, { condition: 'NX', expiration: { type: 'PX', value: CLAIM_TTL_MS } })
      if (claimed !== 'OK') continue
      await deleteAllButClaim(client)
    } finally {
      await client.close()
    }
    return {
      kind: 'redis',
      url,
      async release() {
        const cleaner = createRedisClient(url)
        await cleaner.connect()
        await deleteAllButClaim(cleaner)
        if ((await cleaner.get(CLAIM_KEY)) === runId) await cleaner.del(CLAIM_KEY)
        await cleaner.close()
      },
    }
  }
  throw new Error(`no Redis database 1–15 is free to claim on ${REDIS_HOST_URL}`)
}

async function deleteAllButClaim(client: RedisClient): Promise<void> {
  for await (const keys of client.scanIterator({ MATCH: '*' })) {
    const doomed = keys.filter((key) => key !== CLAIM_KEY)
    if (doomed.length > 0) await client.del(doomed)
  }
}

const DATABASE_PREFIX = 'relay_test_'
const STALE_AFTER_MS = 60 * 60_000

/**
 * A PostgreSQL database created for this run and dropped at the end (the relay's tables live in
 * `public` of whatever database STORE_URL names). Databases that crashed runs left behind more
 * than an hour ago are dropped first; the name carries its creation time for that.
 */
export async function createPostgresDatabase(): Promise<IsolatedStore> {
  const name = `${DATABASE_PREFIX}${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  await admin.connect()
  try {
    const { rows } = await admin.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [`${DATABASE_PREFIX}%`])
    for (const { datname } of rows) {
      const created = parseInt(datname.slice(DATABASE_PREFIX.length).split('_')[0] ?? '', 36)
      if (Date.now() - created > STALE_AFTER_MS) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`)
    }
    await admin.query(`CREATE DATABASE "${name}"`)
  } finally {
    await admin.end()
  }
  return {
    kind: 'postgres',
    url: postgresUrl({ database: name }),
    async release() {
      const dropper = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
      await dropper.connect()
      // FORCE: a relay process that was killed may leave a connection the server has not reaped yet.
      await dropper.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      await dropper.end()
    },
  }
}

/** A fresh SQLite file in a fresh directory (the relay writes its key file beside it). */
export function createSqliteFile(): IsolatedStore {
  const dir = mkdtempSync(join(tmpdir(), 'relay-lifecycle-'))
  return {
    kind: 'sqlite',
    url: `sqlite://${join(dir, 'relay.sqlite')}`,
    release: async () => rmSync(dir, { recursive: true, force: true }),
  }
}

export function memoryStore(): IsolatedStore {
  return { kind: 'memory', url: 'memory://', release: async () => undefined }
}

/** Opens one of the four kinds. */
export async function isolatedStore(kind: IsolatedStore['kind']): Promise<IsolatedStore> {
  switch (kind) {
    case 'memory':
      return memoryStore()
    case 'sqlite':
      return createSqliteFile()
    case 'redis':
      return claimRedisDatabase()
    case 'postgres':
      return createPostgresDatabase()
  }
}

/** The raw stored value of a key in the relay's tokens namespace (default prefix), for checking its seal. */
export async function readRawToken(store: IsolatedStore, tokenKey: string): Promise<string | undefined> {
  let raw: string | null | undefined
  if (store.kind === 'redis') {
    const client = createClient({ url: store.url })
    await client.connect()
    // @keyv/redis joins its namespace and the key with '::'.
    raw = await client.get(`relay/tokens::${tokenKey}`)
    await client.close()
  } else if (store.kind === 'postgres') {
    const client = new pg.Client({ connectionString: store.url })
    await client.connect()
    raw = (await client.query<{ value: string }>('SELECT value FROM relay_kv WHERE key = $1', [`relay/tokens:${tokenKey}`])).rows[0]?.value
    await client.end()
  } else {
    throw new Error(`readRawToken reads redis and postgres stores, not ${store.kind}`)
  }
  if (raw == null) return undefined
  // Keyv's envelope: {"value":"v1.<keyId>.…","expires":…}
  return (JSON.parse(raw) as { value: string }).value
}

/** Whether the refresh lease for a token key is held right now (its key or row exists and is live). */
export async function isRefreshLeaseHeld(store: IsolatedStore, tokenKey: string): Promise<boolean> {
  const key = `relay/lock:refresh:${tokenKey}`
  if (store.kind === 'redis') {
    const client = createClient({ url: store.url })
    await client.connect()
    const exists = await client.exists(key)
    await client.close()
    return exists === 1
  }
  if (store.kind === 'postgres') {
    const client = new pg.Client({ connectionString: store.url })
    await client.connect()
    const { rows } = await client.query(
      'SELECT 1 FROM relay_locks WHERE key = $1 AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::bigint',
      [key],
    )
    await client.end()
    return rows.length === 1
  }
  throw new Error(`isRefreshLeaseHeld reads redis and postgres stores, not ${store.kind}`)
}
