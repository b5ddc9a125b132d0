// A POSTed message's event-stream answer, read by the relay's node:http fetch: a plain answer (only
// JSON-RPC responses, then the end) becomes the equivalent JSON; anything else reaches the reader
// as the server sent it, byte for byte. Against a node:http server that writes the chunks each
// case names, and against the SDK's own MCP server.
import { z } from 'zod'
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHttpFetch, wholeBodyOf, type HttpFetch } from '../../src/mcp/http-fetch.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'

const RESPONSE = '{"jsonrpc":"2.0","id":1,"result":{"ok":true}}'
const SECOND = '{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"Method not found"}}'
const NOTIFICATION = '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}'

/** What the server writes for each case: chunks, then the end (or a destroyed socket). */
const CASES: Record<string, { chunks: string[]; destroy?: boolean }> = {
  one: { chunks: [`event: message\ndata: ${RESPONSE}\n\n`] },
  'two-split-crlf': { chunks: [`data: ${RESPONSE}\r`, `\n\r\ndata: ${SECOND.slice(0, 20)}`, `${SECOND.slice(20)}\r\n\r\n`] },
  'comment-and-cr': { chunks: [`: keep-alive\rdata: ${RESPONSE}\r\r`] },
  notification: { chunks: [`data: ${NOTIFICATION}\n\n`, `data: ${RESPONSE}\n\n`] },
  'event-id': { chunks: [`id: 7\ndata: ${RESPONSE}\n\n`] },
  'other-event': { chunks: [`event: ping\ndata: ${RESPONSE}\n\n`] },
  'no-answer': { chunks: ['data: \n\n'] },
  unfinished: { chunks: [`data: ${RESPONSE}\n`] },
  broken: { chunks: [`data: ${RESPONSE}\n\n`], destroy: true },
  empty: { chunks: [] },
}

let server: Server
let origin: string
let http: HttpFetch
let upstream: McpUpstream

beforeAll(async () => {
  server = createServer((req, res) => {
    const test = CASES[(req.url ?? '/').slice(1)]!
    req.resume()
    req.on('end', async () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-case': req.url ?? '' })
      for (const chunk of test.chunks) {
        res.write(chunk)
        // Each chunk its own packet: the reader sees the pieces the case is about.
        await new Promise((resolve) => setImmediate(resolve))
      }
      if (test.destroy) res.destroy()
      else res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  http = createHttpFetch()
  upstream = await startMcpUpstream()
})

afterAll(async () => {
  http?.close()
  server?.closeAllConnections()
  await new Promise((resolve) => server?.close(resolve))
  await upstream?.close()
})

function post(name: string): Promise<Response> {
  return http.fetch(`${origin}/${name}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
}

describe('a POSTed message answered with an event stream', () => {
  it.each([
    ['one', JSON.parse(RESPONSE)],
    ['two-split-crlf', [JSON.parse(RESPONSE), JSON.parse(SECOND)]],
    ['comment-and-cr', JSON.parse(RESPONSE)],
  ])('of responses only (%s) is answered as the equivalent JSON, headers kept', async (name, expected) => {
    const response = await post(name)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json')
    expect(response.headers.get('x-case')).toBe(`/${name}`)
    expect(wholeBodyOf(response)).toBeTypeOf('string')
    expect(await response.json()).toEqual(expected)
  })

  it.each(['notification', 'event-id', 'other-event', 'no-answer', 'unfinished', 'empty'])(
    'of anything else (%s) streams byte for byte as the server sent it',
    async (name) => {
      const response = await post(name)
      expect(response.headers.get('content-type')).toBe('text/event-stream')
      expect(wholeBodyOf(response)).toBeUndefined()
      expect(await response.text()).toBe(CASES[name]!.chunks.join(''))
    },
  )

  it('that breaks after its answer streams what came, then the break', async () => {
    const response = await post('broken')
    expect(response.headers.get('content-type')).toBe('text/event-stream')
    const reader = response.body!.getReader()
    let text = ''
    const failure = await (async () => {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return undefined
        text += Buffer.from(value).toString()
      }
    })().catch((error: unknown) => error)
    expect(text).toBe(CASES.broken!.chunks.join(''))
    expect(failure).toBeInstanceOf(Error)
  })

  it("carries the SDK's calls and errors through a real MCP server", async () => {
    const answered: string[] = []
    const recording: typeof http.fetch = async (input, init) => {
      const response = await http.fetch(input, init)
      if (init?.method === 'POST' && response.status === 200) answered.push(response.headers.get('content-type') ?? '')
      return response
    }
    const client = new Client({ name: 'event-stream-answer-test', version: '1.0.0' })
    await client.connect(new StreamableHTTPClientTransport(new URL(upstream.url), { fetch: recording }))
    const result = await client.callTool({ name: 'echo', arguments: { text: 'hello' } })
    expect(result.content).toEqual([{ type: 'text', text: 'hello' }])
    await expect(client.request({ method: 'no/such/method' }, z.object({}).loose())).rejects.toThrow(/not found/i)
    await client.close()
    // initialize, tools/call and the failed request: each sent as an event stream, each read as JSON.
    expect(answered).toEqual(['application/json', 'application/json', 'application/json'])
  })
})
