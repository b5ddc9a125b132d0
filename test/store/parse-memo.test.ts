import { afterAll, describe, expect, it } from 'vitest'
import { openStore } from '../../src/store/open-store.ts'
import { BACKENDS, cleanUp, removeSqliteDirs, uniquePrefix } from './backends.ts'

afterAll(removeSqliteDirs)

// The memoized namespaces remember parses by stored text: what another replica writes, drops or
// lets expire is what the next read answers, never the remembered value.
describe.each(BACKENDS.filter((backend) => backend.kind !== 'memory'))('memoized parses, $kind store shared by two replicas', ({ url }) => {
  it.each(['tools', 'discovery'] as const)('%s: reads follow the other replica’s writes, drops and expiry', async (name) => {
    const prefix = uniquePrefix()
    const shared = url()
    const one = await openStore(shared, { keyPrefix: prefix })
    const two = await openStore(shared, { keyPrefix: prefix })
    try {
      const mine = one.namespace(name)
      const theirs = two.namespace(name)
      await theirs.set('server:echo', [{ name: 'echo' }])
      expect(await mine.get('server:echo')).toEqual([{ name: 'echo' }])
      expect(await mine.get('server:echo')).toEqual([{ name: 'echo' }])

      await theirs.set('server:echo', [{ name: 'echo' }, { name: 'add' }])
      expect(await mine.get('server:echo')).toEqual([{ name: 'echo' }, { name: 'add' }])

      await theirs.delete('server:echo')
      expect(await mine.get('server:echo')).toBeUndefined()

      // A ttl long enough to read the value back on a loaded machine; then the read that follows
      // its expiry (polled, bounded) answers nothing, not the remembered parse.
      const ttlMs = 1500
      const setAt = Date.now()
      await theirs.set('server:echo', [{ name: 'echo' }], ttlMs)
      expect(await mine.get('server:echo')).toEqual([{ name: 'echo' }])
      let after: unknown = [{ name: 'echo' }]
      while (after !== undefined && Date.now() - setAt < ttlMs + 5000) {
        await new Promise((done) => setTimeout(done, 50))
        after = await mine.get('server:echo')
      }
      expect(after).toBeUndefined()
      expect(Date.now() - setAt).toBeGreaterThanOrEqual(ttlMs - 50)
    } finally {
      await two.close()
      await cleanUp(one, prefix)
    }
  })

  it('hands out a shared parse frozen, so no reader can change what the next one reads', async () => {
    const prefix = uniquePrefix()
    const store = await openStore(url(), { keyPrefix: prefix })
    try {
      const tools = store.namespace('tools')
      await tools.set('server:echo', [{ name: 'echo', inputSchema: { type: 'object' } }])
      const first = (await tools.get('server:echo')) as Array<{ name: string; inputSchema: { type: string } }>
      expect(() => {
        first[0]!.inputSchema.type = 'string'
      }).toThrow(TypeError)
      expect(await tools.get('server:echo')).toEqual([{ name: 'echo', inputSchema: { type: 'object' } }])
    } finally {
      await cleanUp(store, prefix)
    }
  })
})
