// FILES_MAX_MB_PER_TENANT (DESIGN.md §3, §4 binary content, §6 "every kept file is bounded, per
// tenant too"), through the relay's routes against a real SDK server whose tool answers images of
// any size: a tenant looping an image tool fills its budget and then gets the item omitted without
// a link and a text that says why; other tenants are not affected; the budget frees as the kept
// files expire; and replicas sharing a store hold one budget however their calls race.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FILE_TTL_MS } from '../../src/store/files.ts'
import { startAnsweringServer, type AnsweringServer } from '../peers/answering-server.ts'
import { isolatedStore } from '../support/isolated-stores.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'

const IMAGE_BYTES = 300_000
// 1 MiB: three 300,000-byte images fit (900,000 bytes), a fourth does not.
const BUDGET = { FILES_MAX_MB_PER_TENANT: '1' }

let peer: AnsweringServer

beforeAll(async () => {
  peer = await startAnsweringServer()
})

afterAll(async () => {
  await peer?.close()
})

/**
 * A kept file's download status, its body read: a 300 KB answer left unread holds its connection
 * busy, and the relay's close waits for it (Fastify closes idle connections only).
 */
async function downloadStatus(url: string): Promise<number> {
  const response = await fetch(url)
  await response.arrayBuffer()
  return response.status
}

async function callImageTool(relay: TestRelay, options: { apiKey?: string } = {}) {
  const answer = await relay.post(
    '/tools/call-tool',
    { user_id: 'looper', tool_ref: 'peer::binary', input: { kind: 'image', size: IMAGE_BYTES, mimeType: 'image/png' } },
    options,
  )
  expect(answer.status).toBe(200)
  expect(answer.body.ok).toBe(true)
  const [, image, hint] = answer.body.result.content
  return { image, hint }
}

describe('kept files per tenant (FILES_MAX_MB_PER_TENANT)', () => {
  let relay: TestRelay
  let clock = Date.now()

  beforeAll(async () => {
    relay = await startRelay({ servers: [{ server_id: 'peer', mcp_url: peer.url }], env: BUDGET, now: () => clock })
  })
  afterAll(async () => {
    await relay?.close()
  })

  it('a tenant looping an image tool fills its budget, then gets the image omitted without a link and told why; another tenant still gets links', async () => {
    const kept = []
    for (let call = 0; call < 3; call++) kept.push(await callImageTool(relay))
    for (const { image } of kept) expect(image.url).toMatch(new RegExp(`^${relay.url}/files/[A-Za-z0-9_-]{43}$`))

    for (let call = 0; call < 2; call++) {
      const { image, hint } = await callImageTool(relay)
      expect(image).toEqual({ type: 'image', mimeType: 'image/png', size_bytes: IMAGE_BYTES, omitted: true })
      expect(hint.type).toBe('text')
      expect(hint.text).toContain('image (image/png, 293 KB) is not included here')
      expect(hint.text).toContain('space for files kept for this workspace is used up')
      expect(hint.text).toContain('within 10 minutes')
    }
    // What was kept before is still served.
    expect(await downloadStatus(kept[0]!.image.url)).toBe(200)

    const other = await callImageTool(relay, { apiKey: OTHER_TENANT_KEY })
    expect(other.image.url).toMatch(/\/files\/[A-Za-z0-9_-]{43}$/)
    expect(await downloadStatus(other.image.url)).toBe(200)
  })

  it('frees the budget as the kept files expire', async () => {
    expect((await callImageTool(relay)).image).not.toHaveProperty('url')
    clock += FILE_TTL_MS
    const { image, hint } = await callImageTool(relay)
    expect(image.url).toMatch(/\/files\/[A-Za-z0-9_-]{43}$/)
    expect(hint.text).toContain(`![image](${image.url})`)
    expect(await downloadStatus(image.url)).toBe(200)
  })
})

describe('one budget for replicas sharing a store', () => {
  it.each(['sqlite', 'redis', 'postgres'] as const)('%s: eight calls racing on two replicas keep three images, no more', async (kind) => {
    const store = await isolatedStore(kind)
    const env = { ...BUDGET, STORE_URL: store.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }
    const storeKeyPrefix = `t${randomBytes(6).toString('hex')}`
    const servers = [{ server_id: 'peer', mcp_url: peer.url }]
    const replicas = [await startRelay({ servers, env, storeKeyPrefix }), await startRelay({ servers, env, storeKeyPrefix })]
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, (_, call) => callImageTool(replicas[call % 2]!)))
      const links = answers.filter(({ image }) => 'url' in image)
      expect(links).toHaveLength(3)
      for (const { image } of links) expect(await downloadStatus(image.url)).toBe(200)
    } finally {
      await Promise.all(replicas.map((replica) => replica.close()))
      await store.release()
    }
  })
})
