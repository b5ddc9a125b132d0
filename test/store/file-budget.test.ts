// The per-tenant budget of kept files (DESIGN.md §3 FILES_MAX_MB_PER_TENANT), on every backend:
// what fits, what frees at expiry, and that racing reservations from two replicas on one store
// never add up to more than the limit. Through the relay's routes: test/relay/file-budget.test.ts.
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { openStore, type RelayStore } from '../../src/store/open-store.ts'
import { BACKENDS, cleanUp, removeSqliteDirs, uniquePrefix } from './backends.ts'

afterAll(removeSqliteDirs)

const MiB = 1024 * 1024
const TTL = 10 * 60_000

describe.each(BACKENDS)('$kind file budget', ({ kind, url }) => {
  const opened: Array<{ store: RelayStore; prefix: string }> = []
  afterEach(async () => {
    for (const { store, prefix } of opened.splice(0)) await cleanUp(store, prefix)
  })

  async function open(prefix = uniquePrefix(), at = url()): Promise<RelayStore> {
    const store = await openStore(at, { keyPrefix: prefix })
    opened.push({ store, prefix })
    return store
  }

  it('counts what a tenant keeps up to its limit, keeps tenants apart, and frees each file when it expires', async () => {
    const { fileBudget } = await open()
    const limitBytes = MiB
    const at = (now: number) => ({ limitBytes, now, expiresAt: now + TTL })
    const start = Date.now()
    expect(await fileBudget.reserve('acme', 400_000, at(start))).toBe(true)
    expect(await fileBudget.reserve('acme', 400_000, at(start + 1000))).toBe(true)
    // 800,000 kept: 300,000 more would pass the limit; what still fits does.
    expect(await fileBudget.reserve('acme', 300_000, at(start + 2000))).toBe(false)
    expect(await fileBudget.reserve('acme', 248_576, at(start + 2000))).toBe(true)
    expect(await fileBudget.reserve('acme', 1, at(start + 2000))).toBe(false)
    // Another tenant has a budget of its own, and the same name under another key prefix (another relay) is another budget.
    expect(await fileBudget.reserve('globex', MiB, at(start + 2000))).toBe(true)
    // The first file expires: its 400,000 bytes are free again, the others still count.
    expect(await fileBudget.reserve('acme', 400_000, at(start + TTL - 1))).toBe(false)
    expect(await fileBudget.reserve('acme', 400_000, at(start + TTL))).toBe(true)
    expect(await fileBudget.reserve('acme', 1, at(start + TTL))).toBe(false)
    // Everything expired: the whole budget is free.
    expect(await fileBudget.reserve('acme', MiB, at(start + 3 * TTL))).toBe(true)
  })

  it('lets racing reservations from two replicas of one store add up to the limit and no more', async () => {
    const prefix = uniquePrefix()
    const at = url()
    const first = await open(prefix, at)
    // memory:// is one process's store: its "replicas" are two callers of the same store.
    const second = kind === 'memory' ? first : await open(prefix, at)
    const now = Date.now()
    const terms = { limitBytes: MiB, now, expiresAt: now + TTL }
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? first : second).fileBudget.reserve('racer', 100_000, terms)),
    )
    // 10 × 100,000 ≤ 1 MiB < 11 × 100,000
    expect(answers.filter(Boolean)).toHaveLength(10)
  })
})
