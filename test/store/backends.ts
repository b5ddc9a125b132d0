import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClient } from '@keyv/redis'
import pg from 'pg'
import { NAMESPACE_NAMES, type RelayStore, type StoreKind } from '../../src/store/open-store.ts'
import { POSTGRES_URL, REDIS_URL } from '../support/services.ts'

export { POSTGRES_URL, REDIS_URL }

/** Unique per call, so tests never meet another run's keys (no '_' or '%': they are LIKE wildcards). */
export function uniquePrefix(): string {
  return `test-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`
}

export interface BackendCase {
  kind: StoreKind
  /** A URL for one test run; for SQLite a fresh file in a fresh directory. */
  url(): string
}

const sqliteDirs: string[] = []

export const BACKENDS: BackendCase[] = [
  { kind: 'memory', url: () => 'memory://' },
  {
    kind: 'sqlite',
    url: () => {
      const dir = mkdtempSync(join(tmpdir(), 'relay-store-'))
      sqliteDirs.push(dir)
      return `sqlite://${join(dir, 'relay.sqlite')}`
    },
  },
  { kind: 'redis', url: () => REDIS_URL },
  { kind: 'postgres', url: () => POSTGRES_URL },
]

/** Removes everything a test stored under `prefix`: every namespace, and lease rows or keys. */
export async function cleanUp(store: RelayStore, prefix: string): Promise<void> {
  for (const name of NAMESPACE_NAMES) await store.namespace(name).clear()
  if (store.kind === 'postgres') {
    const client = new pg.Client({ connectionString: POSTGRES_URL })
    await client.connect()
    await client.query('DELETE FROM relay_locks WHERE key LIKE $1', [`${prefix}/%`])
    await client.end()
  }
  if (store.kind === 'redis') {
    const client = createClient({ url: REDIS_URL })
    await client.connect()
    for await (const keys of client.scanIterator({ MATCH: `${prefix}/*` })) {
      if (keys.length > 0) await client.del(keys)
    }
    await client.close()
  }
  await store.close()
}

export function removeSqliteDirs(): void {
  for (const dir of sqliteDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
}
