// The tool-list cache on its own, over an in-memory Keyv: what a drop() does to a load in flight,
// and what it leaves behind when nothing is loading. Through the relay's routes against real
// servers: test/relay/tool-cache.test.ts.
import { randomBytes } from 'node:crypto'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { Tool } from '@modelcontextprotocol/client'
import { Keyv } from 'keyv'
import { describe, expect, it } from 'vitest'
import { createToolListCache, type LoadedToolList } from '../../src/mcp/tool-cache.ts'

const tool = (name: string): Tool => ({ name, inputSchema: { type: 'object' } })
/** A list loaded for `key`, kept a minute. */
const loaded = (key: string, tools: Tool[]): LoadedToolList => ({ tools, key, freshMs: 60_000, keepMs: 60_000 })
const FRESH = { acceptStale: false }

// A full collection before each heap reading, so the readings count what is still referenced.
setFlagsFromString('--expose-gc')
const collectGarbage = runInNewContext('gc') as () => void

describe('tool-list cache and drop()', () => {
  it('a load in flight when its key is dropped does not write its (stale) list back; the next get loads again', async () => {
    const keyv = new Keyv()
    const cache = createToolListCache({ keyv, now: Date.now })
    let answer!: (list: LoadedToolList) => void
    let loadStarted!: () => void
    const started = new Promise<void>((resolve) => (loadStarted = resolve))
    const first = cache.get(
      'docs',
      () => {
        loadStarted()
        return new Promise<LoadedToolList>((resolve) => (answer = resolve))
      },
      FRESH,
    )
    await started
    await cache.drop('docs')
    answer(loaded('docs', [tool('before-the-drop')]))
    expect(await first).toMatchObject({ tools: [tool('before-the-drop')], source: 'upstream' })
    expect(await keyv.get('docs')).toBeUndefined()

    expect(await cache.get('docs', async () => loaded('docs', [tool('after-the-drop')]), FRESH)).toMatchObject({ tools: [tool('after-the-drop')], source: 'upstream' })
    expect(await cache.get('docs', async () => loaded('docs', [tool('not-loaded')]), FRESH)).toMatchObject({ tools: [tool('after-the-drop')], source: 'cache' })
  })

  it('remembers nothing of a key dropped while nothing loads it: 20,000 drops of 2 KB keys leave the heap where it was', async () => {
    const cache = createToolListCache({ keyv: new Keyv(), now: Date.now })
    await cache.drop('warm-up') // Keyv's and the cache's own first allocations
    const KEYS = 20_000
    const KEY_CHARACTERS = 2048
    collectGarbage()
    const before = process.memoryUsage().heapUsed
    // A key per sign-in or reset (tool_cache "user": server and user): distinct, flat strings.
    for (let i = 0; i < KEYS; i++) await cache.drop(randomBytes(KEY_CHARACTERS / 2).toString('hex'))
    collectGarbage()
    const grown = process.memoryUsage().heapUsed - before
    // Keeping the keys would hold at least KEYS × KEY_CHARACTERS bytes (40 MB); a tenth of that is noise.
    expect(grown).toBeLessThan((KEYS * KEY_CHARACTERS) / 10)
    // Used after the reading, so the cache (and whatever it holds) is live while the heap is measured.
    expect(await cache.get('docs', async () => loaded('docs', [tool('search')]), FRESH)).toMatchObject({ tools: [tool('search')], source: 'upstream' })
  })
})
