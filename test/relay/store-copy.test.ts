// DESIGN.md §6: "A copy of the store gives nothing usable: tickets, flows, input refs and files are
// keyed by a hash of their id, and every value holding a secret or a live link is sealed; no index
// holds a raw id." The relay goes through real sign-ins (oidc-provider, dynamic registration, an
// SDK MCP server), a refresh, a live login link left unused, a flow left waiting at the
// authorization server and a kept file, on each backend that outlives the process; then the store
// is read as whoever copies it would read it — the SQLite file and its WAL as bytes, every Redis
// key and value, every row of every PostgreSQL table — and no id or secret may appear in it.
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { createClient } from '@keyv/redis'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAnsweringServer, type AnsweringServer } from '../peers/answering-server.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { pressContinue, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startModernUpstream, type ModernUpstream } from '../peers/modern-upstream.ts'
import { isolatedStore, type IsolatedStore } from '../support/isolated-stores.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

let as: AuthorizationServer
let docs: McpUpstream
let files: AnsweringServer
let modern: ModernUpstream

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  files = await startAnsweringServer()
  modern = await startModernUpstream()
})

afterAll(async () => {
  await Promise.all([docs?.close(), files?.close(), as?.close(), modern?.close()])
})

const idOf = (url: string) => url.slice(url.lastIndexOf('/') + 1)

/**
 * Drives `relay` through everything that writes an id or a secret to its store, and returns the
 * ids the relay handed out (the authorization server keeps the secrets it issued or was shown).
 */
async function leaveEverythingInTheStore(relay: TestRelay, moveClock: (ms: number) => void): Promise<Map<string, string>> {
  const handedOut = new Map<string, string>()
  const loginUrl = async (userId: string) => {
    const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs' })
    const url = status.body.servers[0].login_url as string
    handedOut.set(idOf(url), `login ticket of ${userId}`)
    return url
  }
  // Two complete sign-ins, each leaving a token (and the registered client) behind.
  for (const userId of ['copy-alice', 'copy-bob']) {
    expect((await signInThroughBrowser(await loginUrl(userId), userId)).status).toBe(200)
  }
  // A live login link nobody opened: the owner index keeps it reusable for a day.
  const waiting = await loginUrl('copy-carol')
  expect(await loginUrl('copy-carol')).toBe(waiting)
  // A flow waiting at the authorization server: Continue pressed, the sign-in never finished.
  const started = await pressContinue(await loginUrl('copy-dave'))
  expect(started.status).toBe(302)
  handedOut.set(new URL(started.headers.get('location')!).searchParams.get('state')!, 'state of a waiting flow')
  // A call, then one due for refresh (the relay's clock moved past the 60 s token): a rotated refresh token.
  const refreshesBefore = as.refreshCount()
  expect((await relay.post('/tools/call-tool', { user_id: 'copy-alice', tool_ref: 'docs::whoami', input: {} })).body.ok).toBe(true)
  moveClock(2 * 60_000)
  expect((await relay.post('/tools/call-tool', { user_id: 'copy-alice', tool_ref: 'docs::whoami', input: {} })).body.ok).toBe(true)
  expect(as.refreshCount()).toBe(refreshesBefore + 1)
  // A kept file.
  const kept = await relay.post('/tools/call-tool', { user_id: 'copy-alice', tool_ref: 'files::binary', input: { kind: 'image', size: 20_000, mimeType: 'image/png' } })
  handedOut.set(idOf(kept.body.result.content[1].url), 'file id')
  // A call waiting for the user's answer (MCP 2026-07-28 input_required): its input_ref.
  const asked = await relay.post('/tools/call-tool', { user_id: 'copy-alice', tool_ref: 'modern::greet', input: {} })
  expect(asked.body.error_code).toBe('USER_INPUT_REQUIRED')
  handedOut.set(asked.body.input_ref, 'input ref')
  return handedOut
}

/** The store as a copy of it reads. */
async function copyOf(store: IsolatedStore): Promise<Buffer> {
  switch (store.kind) {
    case 'sqlite': {
      // The database file, its write-ahead log and shared-memory index: everything SQLite wrote.
      const path = store.url.slice('sqlite://'.length)
      const dir = dirname(path)
      return Buffer.concat(readdirSync(dir).filter((name) => name.startsWith('relay.sqlite')).map((name) => readFileSync(join(dir, name))))
    }
    case 'redis': {
      const client = createClient({ url: store.url })
      await client.connect()
      const parts: string[] = []
      try {
        for await (const keys of client.scanIterator({ MATCH: '*' })) {
          for (const key of keys) {
            const type = await client.type(key)
            const value =
              type === 'string' ? await client.get(key)
              : type === 'zset' ? await client.zRangeWithScores(key, 0, -1)
              : type === 'hash' ? await client.hGetAll(key)
              : type === 'set' ? await client.sMembers(key)
              : type === 'list' ? await client.lRange(key, 0, -1)
              : `unread type ${type}`
            parts.push(key, JSON.stringify(value))
          }
        }
      } finally {
        await client.close()
      }
      return Buffer.from(parts.join('\n'))
    }
    case 'postgres': {
      const client = new pg.Client({ connectionString: store.url })
      await client.connect()
      const parts: string[] = []
      try {
        const tables = await client.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (const { tablename } of tables.rows) {
          const rows = await client.query<{ row: string }>(`SELECT t::text AS row FROM "${tablename}" t`)
          parts.push(tablename, ...rows.rows.map(({ row }) => row))
        }
      } finally {
        await client.end()
      }
      return Buffer.from(parts.join('\n'))
    }
    case 'memory':
      throw new Error('a memory store has no copy to read')
  }
}

describe('a copy of the store holds no id and no secret', () => {
  it.each(['sqlite', 'redis', 'postgres'] as const)('%s: no login ticket, state, code, verifier, token, client secret, file id or input ref in any key or value', async (kind) => {
    const store = await isolatedStore(kind)
    let clockOffsetMs = 0
    const relay = await startRelay({
      servers: [
        { server_id: 'docs', description: 'Docs', mcp_url: docs.url },
        { server_id: 'files', description: 'Files', mcp_url: files.url },
        { server_id: 'modern', description: 'A 2026-07-28 server', mcp_url: modern.url },
      ],
      env: {
        STORE_URL: store.url,
        ...(kind === 'sqlite' ? {} : { RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }),
        OAUTH_TRUSTED_HOSTS: new URL(as.url).host,
      },
      // isolatedStore: the whole database (Redis db, PostgreSQL database, SQLite file) is this test's.
      storeKeyPrefix: 'relay',
      now: () => Date.now() + clockOffsetMs,
    })
    try {
      const secrets = await leaveEverythingInTheStore(relay, (ms) => (clockOffsetMs += ms))
      for (const { kind: what, value } of as.issuedSecrets) secrets.set(value, what)
      const kinds = new Set(secrets.values())
      for (const expected of ['state', 'code', 'code_verifier', 'access_token', 'refresh_token', 'client_secret', 'registration_access_token', 'file id', 'input ref', 'login ticket of copy-carol', 'state of a waiting flow']) {
        expect(kinds, `the run produced a ${expected}`).toContain(expected)
      }

      const copy = await copyOf(store)
      // The copy is the real thing: what the relay stores in the clear is there (user ids in token keys).
      expect(copy.includes('copy-alice')).toBe(true)
      const found = [...secrets].filter(([value]) => copy.includes(value)).map(([, what]) => what)
      expect(found).toEqual([])
    } finally {
      await relay.close()
      await store.release()
    }
  }, 60_000)
})
