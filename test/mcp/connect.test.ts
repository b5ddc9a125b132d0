// connectUpstream against a real SDK MCP server.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closeUpstream, connectUpstream } from '../../src/mcp/connect.ts'
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
  it('shares one compiled output-schema validator among sessions, and still validates with it', async () => {
    const [first, second] = await Promise.all([connect(), connect()])
    await Promise.all([first.listTools(), second.listTools()])
    const validator = first.getToolOutputValidator('whoami')
    expect(validator).toBeDefined()
    expect(second.getToolOutputValidator('whoami')).toBe(validator)
    expect(validator!({ sub: 'someone' }).valid).toBe(true)
    expect(validator!({ sub: 42 }).valid).toBe(false)
    const result = await second.callTool({ name: 'whoami', arguments: {} })
    expect(result.structuredContent).toEqual({ sub: null })
    await Promise.all([closeUpstream(first, { terminate: true }), closeUpstream(second, { terminate: true })])
    expect(upstream.counters.sessionsOpen()).toBe(0)
  })
})
