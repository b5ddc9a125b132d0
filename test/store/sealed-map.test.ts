import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { openStore, type RelayStore } from '../../src/store/open-store.ts'
import { createSealer } from '../../src/store/seal.ts'
import { createSealedMap } from '../../src/store/sealed-map.ts'
import { BACKENDS, cleanUp, removeSqliteDirs, uniquePrefix } from './backends.ts'
import { waitUntil } from '../battery/harness.ts'

interface Token {
  access_token: string
  refresh_token: string
}

const key1 = randomBytes(32)
const key2 = randomBytes(32)
const token: Token = { access_token: 'at-secret', refresh_token: 'rt-secret' }

function recordingLogger() {
  const calls: Array<{ obj: object; msg: string }> = []
  return { calls, logger: { warn: (obj: object, msg: string) => void calls.push({ obj, msg }) } }
}

afterAll(removeSqliteDirs)

describe.each(BACKENDS)('sealed map on $kind', ({ url }) => {
  let store: RelayStore
  let prefix: string

  afterEach(async () => {
    await cleanUp(store, prefix)
  })

  async function setUp() {
    prefix = uniquePrefix()
    store = await openStore(url(), { keyPrefix: prefix })
    return store.namespace('tokens')
  }

  it('stores values sealed and reads them back, with ttl and delete', async () => {
    const keyv = await setUp()
    const { logger } = recordingLogger()
    const tokens = createSealedMap<Token>({ keyv, sealer: createSealer([key1]), logger })
    await tokens.set('alice', token)
    const raw: unknown = await keyv.get('alice')
    expect(raw).toMatch(/^v1\./)
    expect(String(raw)).not.toContain('secret')
    expect(await tokens.get('alice')).toEqual(token)
    expect(await tokens.get('bob')).toBeUndefined()

    await tokens.set('short', token, 1500)
    expect(await tokens.get('short')).toEqual(token)
    // Polled (bounded) until the ttl has run out: no fixed sleep to outlast it.
    await waitUntil(async () => (await tokens.get('short')) === undefined, 8000, 'the short token to expire')

    expect(await tokens.delete('alice')).toBe(true)
    expect(await tokens.delete('alice')).toBe(false)
    expect(await tokens.get('alice')).toBeUndefined()
  })

  it('survives rotation (key1, then key2,key1) and re-seals with key2 on the next write', async () => {
    const keyv = await setUp()
    const { calls, logger } = recordingLogger()
    await createSealedMap<Token>({ keyv, sealer: createSealer([key1]), logger }).set('alice', token)

    const rotated = createSealedMap<Token>({ keyv, sealer: createSealer([key2, key1]), logger })
    expect(await rotated.get('alice')).toEqual(token)
    expect(createSealer([key2]).open(String(await keyv.get('alice')), 'alice')).toBeUndefined() // still key1's

    await rotated.set('alice', { ...token, access_token: 'at-new' })
    const onlyKey2 = createSealedMap<Token>({ keyv, sealer: createSealer([key2]), logger })
    expect(await onlyKey2.get('alice')).toEqual({ ...token, access_token: 'at-new' })
    expect(calls).toEqual([])
  })

  it('with resealOnRead, moves a value to the first key when it is read, keeping its expiry', async () => {
    const keyv = await setUp()
    const { calls, logger } = recordingLogger()
    await createSealedMap<Token>({ keyv, sealer: createSealer([key1]), logger }).set('client', token, 60_000)
    const before = await keyv.get('client', { raw: true })

    const rotated = createSealedMap<Token>({ keyv, sealer: createSealer([key2, key1]), logger, resealOnRead: true })
    expect(await rotated.get('client')).toEqual(token)
    const after = await keyv.get('client', { raw: true })
    expect(createSealer([key2]).open(String(after?.value), 'client')?.value).toEqual(token)
    expect(after?.expires).toBeGreaterThan(Date.now() + 50_000)
    expect(after?.expires).toBeLessThanOrEqual(before!.expires! + 100)
    // Once moved, the old key can go.
    expect(await createSealedMap<Token>({ keyv, sealer: createSealer([key2]), logger }).get('client')).toEqual(token)
    expect(calls).toEqual([])
  })

  it('treats a value no key opens as absent and reports it once per key, without key or value', async () => {
    const keyv = await setUp()
    const { calls, logger } = recordingLogger()
    await createSealedMap<Token>({ keyv, sealer: createSealer([key1]), logger }).set('alice', token)
    await createSealedMap<Token>({ keyv, sealer: createSealer([key1]), logger }).set('bob', token)
    await keyv.set('garbage', 'not a sealed value')

    const lost = createSealedMap<Token>({ keyv, sealer: createSealer([key2]), logger })
    expect(await lost.get('alice')).toBeUndefined()
    expect(await lost.get('alice')).toBeUndefined()
    expect(await lost.get('bob')).toBeUndefined()
    expect(await lost.get('garbage')).toBeUndefined()
    expect(calls.map((call) => call.msg)).toEqual(Array(3).fill('sealed value unreadable, treated as absent'))
    const logged = JSON.stringify(calls)
    for (const secret of ['alice', 'bob', 'secret', 'not a sealed value']) expect(logged).not.toContain(secret)

    await lost.set('alice', token) // a write replaces it; a later unreadable value is reported again
    expect(await lost.get('alice')).toEqual(token)
  })

  it('does not open a sealed value copied under another user\'s key', async () => {
    const keyv = await setUp()
    const { calls, logger } = recordingLogger()
    const tokens = createSealedMap<Token>({ keyv, sealer: createSealer([key1]), logger })
    await tokens.set('alice', token)
    await keyv.set('mallory', await keyv.get('alice'))
    expect(await tokens.get('mallory')).toBeUndefined()
    expect(calls).toHaveLength(1)
  })
})
