// The fetch under every pooled transport, against a real SDK MCP server.
import { getEventListeners } from 'node:events'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createUpstreamFetch, UpstreamAuthError, UpstreamTooLargeError } from '../../src/mcp/upstream-fetch.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'

let upstream: McpUpstream

beforeAll(async () => {
  upstream = await startMcpUpstream()
})

afterAll(async () => {
  await upstream?.close()
})

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '1.0.0' } },
}

function post(fetchLike: ReturnType<typeof createUpstreamFetch>, signal: AbortSignal) {
  return fetchLike(upstream.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify(initialize),
    signal,
  })
}

describe('createUpstreamFetch', () => {
  it('leaves no abort listener on the session signal once a response is read', async () => {
    const upstreamFetch = createUpstreamFetch({ accessToken: () => undefined, maxResponseBytes: 1024 * 1024 })
    const session = new AbortController()
    for (let i = 0; i < 50; i++) {
      const response = await post(upstreamFetch, session.signal)
      expect(await response.text()).toContain('"protocolVersion"')
    }
    expect(getEventListeners(session.signal, 'abort')).toHaveLength(0)
  })

  it('still aborts a request in flight when the session is closed', async () => {
    const upstreamFetch = createUpstreamFetch({ accessToken: () => undefined, maxResponseBytes: 1024 * 1024 })
    const session = new AbortController()
    const response = await post(upstreamFetch, session.signal)
    session.abort()
    await expect(response.text()).rejects.toThrow()
  })

  it('refuses a response larger than the bound, declared or streamed', async () => {
    const declared = createUpstreamFetch({ accessToken: () => undefined, maxResponseBytes: 64 })
    const session = new AbortController()
    await expect(post(declared, session.signal).then((response) => response.text())).rejects.toBeInstanceOf(UpstreamTooLargeError)
    // A chunked body (an SSE answer) is counted as it arrives.
    const streamed = createUpstreamFetch({
      accessToken: () => undefined,
      maxResponseBytes: 64,
      fetch: async () =>
        new Response(
          new ReadableStream({
            start(controller) {
              for (let i = 0; i < 3; i++) controller.enqueue(new Uint8Array(40))
              controller.close()
            },
          }),
        ),
    })
    await expect(post(streamed, session.signal).then((response) => response.text())).rejects.toBeInstanceOf(UpstreamTooLargeError)
    expect(getEventListeners(session.signal, 'abort')).toHaveLength(0)
  })

  it('sends the session\'s current token on each request', async () => {
    let token = 'first'
    const seen: Array<string | null> = []
    const upstreamFetch = createUpstreamFetch({
      accessToken: () => token,
      maxResponseBytes: 1024 * 1024,
      fetch: async (input, init) => {
        seen.push(new Headers(init?.headers).get('authorization'))
        return fetch(input, init)
      },
    })
    await (await post(upstreamFetch, new AbortController().signal)).text()
    token = 'second'
    await (await post(upstreamFetch, new AbortController().signal)).text()
    expect(seen).toEqual(['Bearer first', 'Bearer second'])
  })

  it('reads a 401 that challenges with the DPoP scheme as one with Bearer (resource_metadata, scope)', async () => {
    const dpopChallenging = await startMcpUpstream({ auth: { issuer: 'https://as.example.com', challengeScheme: 'DPoP', challengeScope: 'mcp:read' } })
    try {
      const upstreamFetch = createUpstreamFetch({ accessToken: () => undefined, maxResponseBytes: 1024 * 1024 })
      const refused = await upstreamFetch(dpopChallenging.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify(initialize),
      }).catch((error: unknown) => error)
      expect(refused).toBeInstanceOf(UpstreamAuthError)
      expect((refused as UpstreamAuthError).status).toBe(401)
      expect((refused as UpstreamAuthError).challenge).toEqual({ resourceMetadataUrl: new URL(dpopChallenging.resourceMetadataUrl!), scope: 'mcp:read', error: undefined })
    } finally {
      await dpopChallenging.close()
    }
  })
})
