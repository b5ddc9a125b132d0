// The node:http fetch under the pooled transports: the part of fetch the MCP SDK transports use,
// against a real SDK MCP server and a plain node:http server that streams, redirects and counts
// connections.
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, LookupFunction } from 'node:net'
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
    } else if (path === '/form') {
      let body = ''
      req.on('data', (chunk: Buffer) => (body += chunk))
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ type: req.headers['content-type'], body })))
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

  it('sends a form body as fetch does (openid-client token requests go through this fetch too)', async () => {
    const response = await http.fetch(`${origin}/form`, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', scope: 'a b' }) })
    expect(await response.json()).toEqual({ type: 'application/x-www-form-urlencoded;charset=UTF-8', body: 'grant_type=refresh_token&scope=a+b' })
  })
})

describe('createHttpFetch with a connectLookup (the SSRF check at connect time, DESIGN.md §6)', () => {
  const port = () => new URL(origin).port
  const answering = (address: string): LookupFunction =>
    ((_hostname: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
      options.all ? callback(null, [{ address, family: 4 }]) : callback(null, address, 4)) as LookupFunction
  const refusing: LookupFunction = (hostname, _options, callback) => callback(new Error(`${hostname} is not allowed`), '')

  it('asks it for the URL of each new connection, and connects where its lookup says', async () => {
    const asked: string[] = []
    const guarded = createHttpFetch({
      connectLookup: (url) => {
        asked.push(url.href)
        return answering('127.0.0.1')
      },
    })
    try {
      const before = connections
      for (let i = 0; i < 2; i++) {
        const response = await guarded.fetch(`http://upstream.example:${port()}/echo`, { method: 'POST', body: `call ${i}` })
        expect(await response.json()).toMatchObject({ body: `call ${i}` })
      }
      // Two requests, one kept-alive connection, one question.
      expect(connections - before).toBe(1)
      expect(asked).toEqual([`http://upstream.example:${port()}/`])
    } finally {
      guarded.close()
    }
  })

  it('fails like fetch, with the refusal as the cause, when the lookup refuses a name or an IP literal; nothing connects', async () => {
    const guarded = createHttpFetch({ connectLookup: () => refusing })
    try {
      const before = connections
      for (const url of [`http://upstream.example:${port()}/echo`, `${origin}/echo`]) {
        await expect(guarded.fetch(url)).rejects.toMatchObject({ name: 'TypeError', message: 'fetch failed', cause: expect.objectContaining({ message: expect.stringMatching(/is not allowed$/) }) })
      }
      expect(connections).toBe(before)
    } finally {
      guarded.close()
    }
  })

  it('connects as before when the connectLookup has no objection (undefined)', async () => {
    const guarded = createHttpFetch({ connectLookup: () => undefined })
    try {
      expect((await guarded.fetch(`${origin}/echo`, { method: 'POST', body: 'y' })).status).toBe(200)
    } finally {
      guarded.close()
    }
  })

  it('sends a request once more on a new connection when a reused one was closed under it, and only then', async () => {
    // A server that drops each connection on its second request without answering: what a
    // client meets when the server's idle timeout closes a kept-alive connection as it is reused.
    let requests = 0
    let sockets = 0
    const dropping = createServer((req, res) => {
      requests++
      const socket = req.socket as typeof req.socket & { served?: number }
      socket.served = (socket.served ?? 0) + 1
      if (socket.served === 2 || req.url === '/always') return socket.destroy()
      req.resume()
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`answer ${requests}`))
    })
    dropping.on('connection', () => sockets++)
    await new Promise<void>((resolve) => dropping.listen(0, '127.0.0.1', resolve))
    const base = `http://127.0.0.1:${(dropping.address() as AddressInfo).port}`
    const own = createHttpFetch()
    try {
      expect(await (await own.fetch(`${base}/a`, { method: 'POST', body: 'one' })).text()).toBe('answer 1')
      // Reused connection dropped: answered from a second connection, the request sent twice in all.
      expect(await (await own.fetch(`${base}/b`, { method: 'POST', body: 'two' })).text()).toBe('answer 3')
      expect({ requests, sockets }).toEqual({ requests: 3, sockets: 2 })
      // A new connection that breaks is an error at once, not a second try.
      own.close()
      const fresh = createHttpFetch()
      const failed = await fresh.fetch(`${base}/always`, { method: 'POST', body: 'three' }).then(() => undefined, (error: unknown) => error)
      fresh.close()
      expect(failed).toBeInstanceOf(TypeError)
      expect((failed as TypeError).message).toBe('fetch failed')
      expect(requests).toBe(4)
    } finally {
      own.close()
      dropping.closeAllConnections()
      await new Promise((resolve) => dropping.close(resolve))
    }
  })
})
