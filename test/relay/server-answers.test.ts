// Every way an upstream server answers a call, through the relay's own HTTP routes, against a
// real SDK server (test/peers/answering-server.ts): URL elicitation, sampling and elicitation
// requests, binary content kept aside behind /files/<id>, task-only tools, tool metadata.
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { binaryBytes, startAnsweringServer, type AnsweringServer } from '../peers/answering-server.ts'
import { claimRedisDatabase, type IsolatedStore } from '../support/isolated-stores.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const USER = { user_id: 'u-answers' }

let peer: AnsweringServer
let relay: TestRelay
let clock = Date.now()
const logLines: string[] = []

beforeAll(async () => {
  peer = await startAnsweringServer()
  relay = await startRelay({
    servers: [
      { server_id: 'peer', description: 'Answering peer', mcp_url: peer.url },
      // The same server with a one-second bound, for the task that never finishes.
      { server_id: 'hasty', mcp_url: peer.url, timeout_seconds: 1 },
    ],
    env: { LOG_LEVEL: 'info' },
    now: () => clock,
    logStream: new Writable({
      write(chunk, _encoding, done) {
        logLines.push(String(chunk))
        done()
      },
    }),
  })
})

afterAll(async () => {
  await relay?.close()
  await peer?.close()
})

const call = (tool_ref: string, input: object = {}) => relay.post('/tools/call-tool', { ...USER, tool_ref, input })

describe('URL elicitation (-32042)', () => {
  it('answers USER_ACTION_REQUIRED with the https page to open and a clean message', async () => {
    const { status, body } = await call('peer::needs-consent', { url: 'https://consent.example.com/approve?x=1' })
    expect(status).toBe(200)
    expect(body).toMatchObject({
      ok: false,
      error_code: 'USER_ACTION_REQUIRED',
      status: 'need_user_action',
      server_id: 'peer',
      tool_ref: 'peer::needs-consent',
      action_url: 'https://consent.example.com/approve?x=1',
    })
    expect(body.message).toContain('Approve access to your calendar on the consent page.')
    expect(body.message).toContain('then call this tool again')
    expect(body.message).not.toMatch(/MCP error/)
  })

  it('passes plain http only on a trusted host (the mcp_url host is one)', async () => {
    const trusted = `${new URL(peer.url).origin}/consent`
    const { body } = await call('peer::needs-consent', { url: trusted })
    expect(body).toMatchObject({ error_code: 'USER_ACTION_REQUIRED', action_url: trusted })
  })

  it.each([
    ['javascript:', 'javascript:alert(document.cookie)'],
    ['data:', 'data:text/html,<script>alert(1)</script>'],
    ['http on an untrusted host', 'http://consent.example.com/approve'],
    ['https with credentials', 'https://bank.example.com@evil.example.com/'],
    ['no URL at all', 'not a url'],
  ])('refuses a %s action URL: UPSTREAM_ERROR, no link, a clean message', async (_name, url) => {
    const { status, body } = await call('peer::needs-consent', { url })
    expect(status).toBe(200)
    expect(body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', tool_ref: 'peer::needs-consent' })
    expect(body).not.toHaveProperty('action_url')
    expect(body.message).toContain('Consent is needed before this tool can run.')
    expect(body.message).not.toMatch(/MCP error/)
    expect(body.message).not.toContain('alert(')
    expect(body.message).not.toContain('evil.example.com')
  })
})

describe('sampling and elicitation requests from the server', () => {
  it('are refused at once, with the reason, and the call answers with the server\'s own words', async () => {
    const { body } = await call('peer::ask-around')
    expect(body.ok).toBe(true)
    const text = body.result.content[0].text as string
    expect(text).toMatch(/^sampling: refused, code -1, ".*no language model at hand/m)
    expect(text).toMatch(/^elicitation: refused, code -1, ".*no user at hand/m)
    expect(text).not.toContain('Method not found')
    expect(peer.answersHeard.join('\n')).toBe(text)
  })
})

describe('binary content', () => {
  it('keeps a large image aside: no data, size_bytes, omitted, a /files link and a Markdown hint; the link serves the bytes', async () => {
    const size = 200 * 1024
    const { body } = await call('peer::binary', { kind: 'image', size, mimeType: 'image/png' })
    expect(body.ok).toBe(true)
    const [intro, image, hint] = body.result.content
    expect(intro).toEqual({ type: 'text', text: 'here is the image' })
    expect(image).toMatchObject({ type: 'image', mimeType: 'image/png', size_bytes: size, omitted: true })
    expect(image).not.toHaveProperty('data')
    expect(image.url).toMatch(new RegExp(`^${relay.url}/files/[A-Za-z0-9_-]{43}$`))
    expect(hint.type).toBe('text')
    expect(hint.text).toContain(`![image](${image.url})`)
    expect(JSON.stringify(body).length).toBeLessThan(2000)

    const response = await fetch(image.url)
    expect(response.status).toBe(200)
    expect(Buffer.from(await response.arrayBuffer()).equals(binaryBytes(size))).toBe(true)
    expect(Object.fromEntries(response.headers)).toMatchObject({
      'content-type': 'image/png',
      'content-disposition': 'inline',
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
      'content-security-policy': "default-src 'none'; sandbox",
    })
  })

  it('leaves content at or under TOOL_RESULT_INLINE_BYTES (default 8192) inline, untouched', async () => {
    const { body } = await call('peer::binary', { kind: 'image', size: 8192, mimeType: 'image/png' })
    expect(body.result.content).toEqual([
      { type: 'text', text: 'here is the image' },
      { type: 'image', mimeType: 'image/png', data: binaryBytes(8192).toString('base64') },
    ])
  })

  it('keeps an embedded resource blob aside as a link (attachment), keeping its uri and mimeType', async () => {
    const { body } = await call('peer::binary', { kind: 'resource', size: 10_000, mimeType: 'application/pdf' })
    const [, item, hint] = body.result.content
    expect(item).toMatchObject({ type: 'resource', resource: { uri: 'file:///report.bin', mimeType: 'application/pdf' }, size_bytes: 10_000, omitted: true })
    expect(item.resource).not.toHaveProperty('blob')
    expect(hint.text).toContain(`[file](${item.url})`)
    const response = await fetch(item.url)
    expect(response.headers.get('content-type')).toBe('application/pdf')
    expect(response.headers.get('content-disposition')).toBe('attachment')
    expect(Buffer.from(await response.arrayBuffer()).equals(binaryBytes(10_000))).toBe(true)
  })

  it.each([
    ['audio/mpeg', 'audio', 'audio/mpeg', 'inline'],
    ['image/svg+xml', 'image', 'image/svg+xml', 'attachment'],
    ['text/html', 'resource', 'text/html', 'attachment'],
    ['IMAGE/PNG; x=1', 'image', 'image/png', 'inline'],
    ['not a type', 'image', 'application/octet-stream', 'attachment'],
    ['text/html\r\nset-cookie: a=b', 'resource', 'application/octet-stream', 'attachment'],
  ])('serves mimeType %j (%s) as %s, %s', async (mimeType, kind, served, disposition) => {
    const { body } = await call('peer::binary', { kind, size: 9000, mimeType })
    const response = await fetch(body.result.content[1].url)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe(served)
    expect(response.headers.get('content-disposition')).toBe(disposition)
    expect(response.headers.get('set-cookie')).toBeNull()
    await response.arrayBuffer()
  })

  it('answers 404 for an unknown id, and for a kept file once its 10 minutes are over', async () => {
    const unknown = await fetch(`${relay.url}/files/${randomBytes(32).toString('base64url')}`)
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as any).error.code).toBe('NOT_FOUND')

    const { body } = await call('peer::binary', { kind: 'image', size: 9000, mimeType: 'image/png' })
    const url = body.result.content[1].url as string
    clock += 10 * 60 * 1000 - 1
    expect((await fetch(url)).status).toBe(200)
    clock += 1
    const expired = await fetch(url)
    expect(expired.status).toBe(404)
    expect(((await expired.json()) as any).error.message).toContain('expired')
  })

  it('never writes a file id to the log', async () => {
    const { body } = await call('peer::binary', { kind: 'image', size: 9000, mimeType: 'image/png' })
    const url = body.result.content[1].url as string
    await (await fetch(url)).arrayBuffer()
    const id = url.split('/').pop()!
    const log = logLines.join('')
    expect(log).toContain('"/files/:id"')
    expect(log).not.toContain(id)
  })
})

describe('task-only tools (execution.taskSupport: required)', () => {
  it('are called as a task and awaited, even on a cold tool cache', async () => {
    const cold = await startRelay({ servers: [{ server_id: 'peer', mcp_url: peer.url }] })
    try {
      const { body } = await cold.post('/tools/call-tool', { ...USER, tool_ref: 'peer::slow-report', input: { ms: 150 } })
      expect(body).toEqual({ ok: true, tool_ref: 'peer::slow-report', result: { content: [{ type: 'text', text: 'report ready after 150 ms' }], isError: false } })
    } finally {
      await cold.close()
    }
  })

  it('work with the tool cache off (TOOL_LIST_CACHE_TTL_SECONDS=0)', async () => {
    const uncached = await startRelay({ servers: [{ server_id: 'peer', mcp_url: peer.url }], env: { TOOL_LIST_CACHE_TTL_SECONDS: '0' } })
    try {
      for (const ms of [10, 20]) {
        const { body } = await uncached.post('/tools/call-tool', { ...USER, tool_ref: 'peer::slow-report', input: { ms } })
        expect(body.result?.content).toEqual([{ type: 'text', text: `report ready after ${ms} ms` }])
      }
    } finally {
      await uncached.close()
    }
  })

  it('answer TIMEOUT past the upstream timeout, and the task is cancelled upstream (tasks/cancel)', async () => {
    const before = peer.methods.get('tasks/cancel') ?? 0
    const { body } = await call('hasty::never-done')
    expect(body).toMatchObject({ ok: false, error_code: 'TIMEOUT', tool_ref: 'hasty::never-done' })
    expect(body.message).toContain('the task was cancelled')
    expect(peer.methods.get('tasks/cancel')).toBe(before + 1)
  })

  it('a server whose tools/list fails still gets its tools called', async () => {
    const broken = await startAnsweringServer({ toolsListFails: true })
    const other = await startRelay({ servers: [{ server_id: 'broken', mcp_url: broken.url }] })
    try {
      const { body } = await other.post('/tools/call-tool', { ...USER, tool_ref: 'broken::described' })
      expect(body).toMatchObject({ ok: true, result: { structuredContent: { answer: 42 } } })
      expect(broken.methods.get('tools/list')).toBe(1)
    } finally {
      await other.close()
      await broken.close()
    }
  })

  it('a warm call of a normal tool adds no upstream round trip: one tools/call, no tools/list', async () => {
    await relay.post('/tools/list-tools', { ...USER, server_id: 'peer' })
    const lists = peer.methods.get('tools/list') ?? 0
    const calls = peer.methods.get('tools/call') ?? 0
    for (let i = 0; i < 3; i++) expect((await call('peer::described')).body.ok).toBe(true)
    expect(peer.methods.get('tools/list') ?? 0).toBe(lists)
    expect(peer.methods.get('tools/call')).toBe(calls + 3)
  })
})

describe('tool metadata', () => {
  it('list-tools passes title, annotations and outputSchema through where the server gives them', async () => {
    const { body } = await relay.post('/tools/list-tools', { ...USER, server_id: 'peer' })
    const described = body.tools.find((tool: { name: string }) => tool.name === 'described')
    expect(described).toMatchObject({
      tool_ref: 'peer::described',
      title: 'Described Tool',
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      outputSchema: { type: 'object', properties: { answer: { type: 'number' } }, required: ['answer'] },
    })
    const plain = body.tools.find((tool: { name: string }) => tool.name === 'needs-consent')
    expect(Object.keys(plain).sort()).toEqual(['description', 'inputSchema', 'name', 'server_description', 'server_id', 'tool_ref'])
  })
})

describe('kept files across replicas', () => {
  let store: IsolatedStore
  const relays: TestRelay[] = []

  beforeAll(async () => {
    store = await claimRedisDatabase()
  })
  afterAll(async () => {
    await Promise.all(relays.map((r) => r.close()))
    await store?.release()
  })

  it('a second relay on the same Redis store serves a file the first kept', async () => {
    const env = { STORE_URL: store.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }
    const storeKeyPrefix = `t${randomBytes(6).toString('hex')}`
    const servers = [{ server_id: 'peer', mcp_url: peer.url }]
    relays.push(await startRelay({ servers, env, storeKeyPrefix }), await startRelay({ servers, env, storeKeyPrefix }))
    const [first, second] = relays as [TestRelay, TestRelay]
    const { body } = await first.post('/tools/call-tool', { ...USER, tool_ref: 'peer::binary', input: { kind: 'image', size: 50_000, mimeType: 'image/webp' } })
    const url = new URL(body.result.content[1].url as string)
    expect(url.origin).toBe(first.url)
    const response = await fetch(`${second.url}${url.pathname}`)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('image/webp')
    expect(Buffer.from(await response.arrayBuffer()).equals(binaryBytes(50_000))).toBe(true)
  })
})
