// connectUpstream against a real SDK MCP server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closeUpstream, connectUpstream, createSharedSchemaValidator } from '../../src/mcp/connect.ts'
import { createUpstreamFetch } from '../../src/mcp/upstream-fetch.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'

let upstream: McpUpstream

beforeAll(async () => {
  upstream = await startMcpUpstream()
})

afterAll(async () => {
  await upstream?.close()
})

const connect = () =>
  connectUpstream({
    url: upstream.url,
    fetch: createUpstreamFetch({ accessToken: () => undefined, maxResponseBytes: 1024 * 1024 }),
    timeoutMs: 5000,
    onToolsChanged: () => undefined,
    onClose: () => undefined,
  })

describe('connectUpstream', () => {
  it('validates structured content against the output schema on every session', async () => {
    const [first, second] = await Promise.all([connect(), connect()])
    await Promise.all([first.listTools(), second.listTools()])
    for (const client of [first, second]) {
      expect((await client.callTool({ name: 'whoami', arguments: {} })).structuredContent).toEqual({ sub: null })
    }
    await Promise.all([closeUpstream(first, { terminate: true }), closeUpstream(second, { terminate: true })])
    expect(upstream.counters.sessionsOpen()).toBe(0)
  })
})

describe('createSharedSchemaValidator', () => {
  it('compiles a schema once by its text, and validates with it', () => {
    const shared = createSharedSchemaValidator()
    const schema = () => ({ type: 'object' as const, properties: { sub: { type: 'string' as const } }, required: ['sub'] })
    const validator = shared.getValidator(schema())
    expect(shared.getValidator(schema())).toBe(validator)
    expect(validator({ sub: 'someone' }).valid).toBe(true)
    expect(validator({ sub: 42 })).toMatchObject({ valid: false, errorMessage: expect.stringContaining('sub') })
  })

  it('starts afresh after 1,000 distinct schemas, so it holds a bounded number', () => {
    const shared = createSharedSchemaValidator()
    const first = shared.getValidator({ type: 'object', title: 'schema 0' })
    for (let i = 1; i <= 1000; i++) shared.getValidator({ type: 'object', title: `schema ${i}` })
    expect(shared.getValidator({ type: 'object', title: 'schema 0' })).not.toBe(first)
  })
})
