// The node:http fetch under the pooled transports: the part of fetch the MCP SDK transports use,
// against a real SDK MCP server and a plain node:http server that streams, redirects and counts
// connections.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHttpFetch, type HttpFetch } from '../../src/mcp/http-fetch.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'

let upstream: McpUpstream
let server: Server
let origin: string
let connections = 0
let releaseStream: (() => void) | undefined
let http: HttpFetch

beforeAll(async () => {
  upstream = await startMcpUpstream()
  server = createServer((req, res) => {
    const path = req.url ?? '/'
    if (path === '/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n')
      releaseStream = () => res.end('data: second\n\n')
    } else if (path === '/redirect') {
      res.writeHead(307, { location: '/elsewhere' }).end()
    } else if (path === '/empty') {
      res.writeHead(204).end()
    } else {
      let body = ''
      req.on('data', (chunk: Buffer) => (body += chunk))
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': ['a=1', 'b=2'] })
        res.end(JSON.stringify({ method: req.method, body, header: req.headers['x-test'] ?? null }))
      })
    }
  })
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  http = createHttpFetch()
})

afterAll(async () => {
  http?.close()
  server?.closeAllConnections()
  await new Promise((resolve) => server?.close(resolve))
  await upstream?.close()
})

describe('createHttpFetch', () => {
  it('sends method, headers and body, answers status, headers and body, over one kept-alive connection', async () => {
    const before = connections
    for (let i = 0; i < 3; i++) {
      const response = await http.fetch(`${origin}/echo`, { method: 'POST', headers: { 'x-test': `call ${i}` }, body: `body ${i}` })
      expect(response.status).toBe(200)
      expect(response.headers.get('content-type')).toBe('application/json')
      expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2'])
      expect(await response.json()).toEqual({ method: 'POST', body: `body ${i}`, header: `call ${i}` })
    }
    expect(connections - before).toBe(1)
  })

  it('streams a body as it arrives', async () => {
    const response = await http.fetch(`${origin}/stream`)
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
    expect((await reader.read()).value).toBe('data: first\n\n')
    releaseStream!()
    expect((await reader.read()).value).toBe('data: second\n\n')
    expect((await reader.read()).done).toBe(true)
  })

  it('aborts a streaming body, and refuses to start with an aborted signal', async () => {
    const controller = new AbortController()
    const response = await http.fetch(`${origin}/stream`, { signal: controller.signal })
    const reader = response.body!.getReader()
    await reader.read()
    controller.abort()
    await expect(reader.read()).rejects.toThrow()
    releaseStream!()
    await expect(http.fetch(`${origin}/echo`, { signal: AbortSignal.abort() })).rejects.toThrow()
  })

  it('leaves redirects to the caller and has no body for 204', async () => {
    const redirect = await http.fetch(`${origin}/redirect`, { redirect: 'manual' })
    expect(redirect.status).toBe(307)
    expect(redirect.headers.get('location')).toBe('/elsewhere')
    const empty = await http.fetch(`${origin}/empty`)
    expect(empty.status).toBe(204)
    expect(empty.body).toBeNull()
  })

  it('fails like fetch when nothing listens', async () => {
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const { port } = closed.address() as AddressInfo
    await new Promise((resolve) => closed.close(resolve))
    await expect(http.fetch(`http://127.0.0.1:${port}/`)).rejects.toMatchObject({
      name: 'TypeError',
      message: 'fetch failed',
      cause: expect.objectContaining({ code: 'ECONNREFUSED' }),
    })
  })

  it('carries a whole MCP session for the SDK transport: initialize, event stream, calls, DELETE', async () => {
    const client = new Client({ name: 'test', version: '1.0.0' })
    const transport = new StreamableHTTPClientTransport(new URL(upstream.url), { fetch: http.fetch })
    await client.connect(transport)
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => client.callTool({ name: 'echo', arguments: { text: `hi ${i}` } })))
    expect(results.map((result) => (result.content as Array<{ text: string }>)[0]!.text)).toEqual(['hi 0', 'hi 1', 'hi 2', 'hi 3', 'hi 4'])
    expect(upstream.counters.sessionsOpen()).toBe(1)
    await transport.terminateSession()
    await client.close()
    expect(upstream.counters.sessionsOpen()).toBe(0)
  })
})
