// Where the tests find the machine's services. `npm test` (scripts/test.ts) sets these variables
// to the services it found answering or started itself; a bare `npx vitest run` falls back to the
// usual local ports.

/** A Redis server whose logical databases 0–15 the tests may use. */
export const REDIS_URL = process.env.RELAY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** A PostgreSQL database on a server where this user may create databases (trust auth). */
export const POSTGRES_URL = process.env.RELAY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** The PostgreSQL server's port, for tests that put a proxy in front of it. */
export const POSTGRES_PORT = Number(new URL(POSTGRES_URL).port || 5432)

/** POSTGRES_URL with another database name, or at another port (a proxy's). */
export function postgresUrl(change: { database?: string; port?: number }): string {
  const url = new URL(POSTGRES_URL)
  if (change.database !== undefined) url.pathname = `/${change.database}`
  if (change.port !== undefined) {
    url.hostname = '127.0.0.1'
    url.port = String(change.port)
  }
  return url.href
}

/** The redis-server program, for tests that start and kill servers of their own. */
export const REDIS_SERVER = process.env.RELAY_TEST_REDIS_SERVER ?? 'redis-server'
