// TokenStore.list over each backend's token index (store/token-index.ts): key order, pages
// joined by `next`, filters, and index entries whose token is gone (a crash between the two
// writes, or a value no key opens) skipped without shortening a page; scans past one batch.
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { storeKey } from '../../src/store/keys.ts'
import { openStore, type RelayStore } from '../../src/store/open-store.ts'
import { createSealer } from '../../src/store/seal.ts'
import { createSealedMap } from '../../src/store/sealed-map.ts'
import { createTokenStore, type TokenOwner, type TokenStore, type UpstreamToken } from '../../src/store/tokens.ts'
import { BACKENDS, cleanUp, removeSqliteDirs, uniquePrefix } from './backends.ts'

afterAll(removeSqliteDirs)

const token = (n: number): UpstreamToken => ({
  accessToken: `at-${n}`,
  refreshToken: `rt-${n}`,
  expiresAt: undefined,
  scope: undefined,
  issuer: 'https://as.example',
  clientId: 'client',
  resource: 'https://mcp.example/mcp',
  obtainedAt: n,
})

describe.each(BACKENDS)('token list on $kind', ({ url }) => {
  let store: RelayStore
  let prefix: string
  let tokens: TokenStore

  afterEach(async () => {
    await cleanUp(store, prefix)
  })

  async function setUp() {
    prefix = uniquePrefix()
    store = await openStore(url(), { keyPrefix: prefix })
    const map = createSealedMap<UpstreamToken>({ keyv: store.namespace('tokens'), sealer: createSealer([randomBytes(32)]), logger: { warn() {} } })
    tokens = createTokenStore({ map, index: store.tokenIndex })
  }

  async function listAll(filter: Partial<TokenOwner>, limit: number) {
    const pages: TokenOwner[][] = []
    let after: string | undefined
    do {
      const page = await tokens.list(filter, { after, limit })
      pages.push(page.entries.map((entry) => entry.owner))
      after = page.next
    } while (after !== undefined && pages.length < 20)
    return pages
  }

  it('pages through live tokens in key order, skipping index entries whose token is gone', async () => {
    await setUp()
    const owners = ['a', 'b', 'c', 'd', 'e', 'f'].map((userId) => ({ tenant: 't1', userId, serverId: 'docs' }))
    for (const [n, owner] of owners.entries()) await tokens.put(owner, token(n))
    // c's token vanished behind the index's back; an index entry names a key never written.
    await store.namespace('tokens').delete(storeKey('t1', 'c', 'docs'))
    await store.tokenIndex.add(storeKey('t1', 'bb', 'docs'))
    // A removal through the store takes the key out of the index too.
    expect(await tokens.remove(owners[4]!)).toBe(true)

    const live = [owners[0], owners[1], owners[3], owners[5]]
    expect(await listAll({}, 2)).toEqual([live.slice(0, 2), live.slice(2, 4)])
    expect(await listAll({}, 3)).toEqual([live.slice(0, 3), live.slice(3)])
    expect(await listAll({ tenant: 't1', userId: 'd' }, 5)).toEqual([[owners[3]]])
    expect(await listAll({ tenant: 't2' }, 5)).toEqual([[]])
  })

  it('finds a rare server past more than one scan batch', async () => {
    await setUp()
    for (let n = 0; n < 520; n++) {
      await tokens.put({ tenant: 't', userId: `u${String(n).padStart(3, '0')}`, serverId: n % 260 === 259 ? 'rare' : 'docs' }, token(n))
    }
    expect(await listAll({ serverId: 'rare' }, 1)).toEqual([
      [{ tenant: 't', userId: 'u259', serverId: 'rare' }],
      [{ tenant: 't', userId: 'u519', serverId: 'rare' }],
    ])
  }, 30_000)
})
