// connectUpstream (the SDK's 2.x client) against real MCP servers of both eras.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Client } from '@modelcontextprotocol/client'
import { closeUpstream, connectUpstream, isEraRefused, type ConnectMode } from '../../src/mcp/connect.ts'
import { createUpstreamFetch } from '../../src/mcp/upstream-fetch.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startModernUpstream, type ModernUpstream } from '../peers/modern-upstream.ts'

let legacy: McpUpstream
let modern: ModernUpstream

beforeAll(async () => {
  ;[legacy, modern] = await Promise.all([startMcpUpstream(), startModernUpstream()])
})

afterAll(async () => {
  await Promise.all([legacy?.close(), modern?.close()])
})

const connect = (url: string, mode: ConnectMode): Promise<Client> =>
  connectUpstream({
    url,
    fetch: createUpstreamFetch({ accessToken: () => undefined, maxResponseBytes: 1024 * 1024 }),
    timeoutMs: 5000,
    mode,
    onToolsChanged: () => undefined,
    onClose: () => undefined,
  })

describe('connectUpstream', () => {
  it('negotiates: server/discover to a 2026-07-28 server, and initialize (a session) to a 2025-era one', async () => {
    const toModern = await connect(modern.url, { kind: 'negotiate' })
    expect(toModern.getProtocolEra()).toBe('modern')
    expect(toModern.getDiscoverResult()?.supportedVersions).toContain('2026-07-28')
    expect(modern.seen.at(-1)!.mcpMethod).toBe('server/discover')

    const toLegacy = await connect(legacy.url, { kind: 'negotiate' })
    expect(toLegacy.getProtocolEra()).toBe('legacy')
    expect(legacy.counters.sessionsOpen()).toBe(1)
    // A negotiating client that ends up a 2025-era session declares nothing (the relay has no user or model there).
    expect(toLegacy.getServerCapabilities()?.tools).toBeDefined()
    await Promise.all([toModern.close(), closeUpstream(toLegacy, { terminate: true })])
    expect(legacy.counters.sessionsOpen()).toBe(0)
  })

  it('adopts a known server/discover result with no round trip, and calls on it', async () => {
    const probe = await connect(modern.url, { kind: 'negotiate' })
    const discover = probe.getDiscoverResult()!
    await probe.close()
    const before = modern.seen.length
    const client = await connect(modern.url, { kind: 'modern', discover })
    expect(modern.seen.length).toBe(before)
    expect((await client.callTool({ name: 'echo', arguments: { text: 'hi' } })).content).toEqual([{ type: 'text', text: 'hi' }])
    expect(modern.seen.slice(before).map((request) => request.mcpMethod)).toEqual(['tools/call'])
    await client.close()
  })

  it('pinned to 2026-07-28, refuses a 2025-era server; a 2026-07-28-only server refuses a 2025 session in a way the relay reads as the era', async () => {
    await expect(connect(legacy.url, { kind: 'negotiate', pin: '2026-07-28' })).rejects.toThrow()
    const refused = await connect(modern.url, { kind: 'legacy' }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(isEraRefused(refused)).toBe(true)
  })

  it('closes a 2026-07-28 client without a DELETE (it has no session), and ends a 2025-era session upstream', async () => {
    const client = await connect(modern.url, { kind: 'negotiate' })
    const before = modern.seen.length
    await closeUpstream(client, { terminate: true })
    expect(modern.seen.length).toBe(before)
    const session = await connect(legacy.url, { kind: 'legacy' })
    expect(legacy.counters.sessionsOpen()).toBe(1)
    await closeUpstream(session, { terminate: true })
    expect(legacy.counters.sessionsOpen()).toBe(0)
  })
})
