// An MCP endpoint that misbehaves on demand, for the battery: a reverse proxy in front of a real
// SDK MCP server (so that, told to behave, it is a working upstream), optionally an OAuth
// protected resource of a real authorization server, that can hang, fail, answer garbage, cut an
// event stream short, answer far too much, redirect elsewhere or reset the connection.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { readBody } from '../peers/read-body.ts'

export type FaultMode =
  | 'pass'
  | 'hang'
  | 'stalled-sse'
  | 'status-500'
  | 'status-500-echo'
  | 'garbage-json'
  | 'garbage-html'
  | 'json-rpc-error'
  | 'wrong-json-rpc'
  | 'truncated-sse'
  | 'ended-sse'
  | 'huge-json'
  | 'huge-json-chunked'
  | 'huge-sse'
  | 'redirect'
  | 'reset'
  | 'endless-tools'
  | 'huge-get-event'

export interface FaultUpstream {
  url: string
  /** What to do with MCP requests; `on: 'tools/call'` applies it to tool calls only (the session stays up). */
  setMode(mode: FaultMode, options?: { on?: 'any' | 'tools/call' }): void
  /** Every Authorization header that reached this server. */
  authorizations: string[]
  /** Requests to the MCP endpoint, in total. */
  requests(): number
  /** Requests held open by 'hang' or 'stalled-sse' right now. */
  hanging(): number
  /** tools/list pages answered by 'endless-tools'. */
  toolPages(): number
  /** Bytes 'huge-get-event' wrote to event streams before the client went away, in total. */
  hugeEventBytes(): number
  /** Event streams of 'huge-get-event' that the client closed. */
  hugeStreamsClosed(): number
  close(): Promise<void>
}

const HUGE_BYTES = 20 * 1024 * 1024
const FORWARDED_REQUEST_HEADERS = ['accept', 'content-type', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id']
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'mcp-session-id', 'cache-control']

export async function startFaultUpstream(options: {
  /** The real MCP endpoint requests go to in 'pass' mode (an open SDK server). */
  target: string
  /** Makes this an OAuth protected resource of that issuer (RFC 9728 metadata, 401 without a bearer token). */
  issuer?: string
  /** Where 'redirect' sends the client (307). */
  redirectTo?: string
}): Promise<FaultUpstream> {
  let mode: FaultMode = 'pass'
  let scope: 'any' | 'tools/call' = 'any'
  const authorizations: string[] = []
  let requests = 0
  let toolPages = 0
  let hugeEventBytes = 0
  let hugeStreamsClosed = 0
  const held = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' }).end(`fault upstream: ${String(error)}`)
      else res.destroy()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const url = `${origin}/mcp`
  const prmPath = '/.well-known/oauth-protected-resource/mcp'

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', origin).pathname
    if (options.issuer && path === prmPath) {
      json(res, 200, { resource: url, authorization_servers: [options.issuer], scopes_supported: ['mcp:read'] })
      return
    }
    if (path !== '/mcp') {
      json(res, 404, { error: 'not_found' })
      return
    }
    requests++
    const authorization = req.headers.authorization
    if (authorization) authorizations.push(authorization)
    if (options.issuer && !authorization) {
      const body = req.method === 'POST' ? await readBody(req) : ''
      void body
      res.setHeader('www-authenticate', `Bearer resource_metadata="${origin}${prmPath}"`)
      json(res, 401, { error: 'invalid_request' })
      return
    }
    const body = req.method === 'POST' ? await readBody(req) : undefined
    const message = parse(body)
    const applies = scope === 'any' || message?.method === scope
    const effective: FaultMode = applies ? mode : 'pass'
    if (effective === 'endless-tools' && message?.method === 'tools/list') {
      // Every page about 256 KiB, and always another one after it.
      toolPages++
      const tool = { name: `tool_${toolPages}`, description: 'd'.repeat(256 * 1024), inputSchema: { type: 'object' } }
      json(res, 200, { jsonrpc: '2.0', id: message.id, result: { tools: [tool], nextCursor: `page-${toolPages}` } })
      return
    }
    if (effective === 'huge-get-event' && req.method === 'GET') {
      // The session's own event stream (server-to-client notifications): one event without end.
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"data":"')
      const chunk = Buffer.alloc(256 * 1024, 'e')
      const pump = () => {
        while (!res.destroyed && hugeEventBytes < 200 * 1024 * 1024) {
          hugeEventBytes += chunk.length
          if (!res.write(chunk)) {
            res.once('drain', pump)
            return
          }
        }
      }
      res.on('error', () => undefined)
      res.on('close', () => hugeStreamsClosed++)
      pump()
      return
    }
    switch (effective) {
      case 'pass':
      case 'endless-tools':
      case 'huge-get-event':
        await forward(req, res, body)
        return
      case 'hang':
        held.add(res)
        res.on('close', () => held.delete(res))
        return
      case 'stalled-sse':
        // An event stream opened for the answer, and then nothing: the response never comes.
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(': working on it\n\n')
        held.add(res)
        res.on('close', () => held.delete(res))
        return
      case 'status-500':
        res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error')
        return
      case 'status-500-echo':
        // A careless server that shows the request it failed on, bearer token and all.
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`failed on request with authorization: ${authorization ?? 'none'}`)
        return
      case 'garbage-json':
        res.writeHead(200, { 'content-type': 'application/json' }).end('}{ not json at all')
        return
      case 'garbage-html':
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>502 Bad Gateway</body></html>')
        return
      case 'json-rpc-error':
        // An internal error whose message an SDK server has already prefixed once.
        json(res, 200, { jsonrpc: '2.0', id: message?.id ?? null, error: { code: -32603, message: 'MCP error -32603: database down' } })
        return
      case 'wrong-json-rpc':
        json(res, 200, { jsonrpc: '2.0', id: 'not-the-request-id', result: { nonsense: true } })
        return
      case 'truncated-sse':
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(`event: message\ndata: {"jsonrpc":"2.0","id":${JSON.stringify(message?.id ?? 0)},"result":{"content":[{"type":"te`)
        setTimeout(() => res.destroy(), 20)
        return
      case 'ended-sse':
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.end(': nothing more to say\n\n')
        return
      case 'huge-json':
      case 'huge-json-chunked':
      case 'huge-sse':
        sendHuge(res, effective, message?.id ?? 0)
        return
      case 'redirect':
        res.writeHead(307, { location: options.redirectTo ?? 'http://127.0.0.1:9/' }).end()
        return
      case 'reset':
        req.socket.resetAndDestroy()
        return
    }
  }

  async function forward(req: IncomingMessage, res: ServerResponse, body: string | undefined): Promise<void> {
    const headers: Record<string, string> = {}
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const value = req.headers[name]
      if (typeof value === 'string') headers[name] = value
    }
    const abort = new AbortController()
    res.on('close', () => abort.abort())
    const response = await fetch(options.target, { method: req.method ?? 'GET', headers, body: body ?? null, signal: abort.signal })
    const outHeaders: Record<string, string> = {}
    for (const name of FORWARDED_RESPONSE_HEADERS) {
      const value = response.headers.get(name)
      if (value !== null) outHeaders[name] = value
    }
    res.writeHead(response.status, outHeaders)
    if (!response.body) {
      res.end()
      return
    }
    Readable.fromWeb(response.body as never)
      .on('error', () => res.destroy())
      .pipe(res)
  }

  return {
    url,
    setMode(next, setOptions = {}) {
      mode = next
      scope = setOptions.on ?? 'any'
    },
    authorizations,
    requests: () => requests,
    hanging: () => held.size,
    toolPages: () => toolPages,
    hugeEventBytes: () => hugeEventBytes,
    hugeStreamsClosed: () => hugeStreamsClosed,
    async close() {
      for (const res of held) res.destroy()
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

function parse(body: string | undefined): { method?: string; id?: unknown } | undefined {
  if (!body) return undefined
  try {
    const value = JSON.parse(body) as unknown
    return (Array.isArray(value) ? value[0] : value) as { method?: string; id?: unknown }
  } catch {
    return undefined
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

/** A well-formed JSON-RPC result for `id` whose text content makes it about 20 MiB. */
function sendHuge(res: ServerResponse, mode: 'huge-json' | 'huge-json-chunked' | 'huge-sse', id: unknown): void {
  const head = `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"content":[{"type":"text","text":"`
  const tail = '"}]}}'
  const prefix = mode === 'huge-sse' ? `event: message\ndata: ${head}` : head
  const suffix = mode === 'huge-sse' ? `${tail}\n\n` : tail
  const headers: Record<string, string | number> = { 'content-type': mode === 'huge-sse' ? 'text/event-stream' : 'application/json' }
  if (mode === 'huge-json') headers['content-length'] = Buffer.byteLength(prefix) + HUGE_BYTES + Buffer.byteLength(suffix)
  res.writeHead(200, headers)
  res.write(prefix)
  const chunk = Buffer.alloc(256 * 1024, 'x')
  let sent = 0
  const pump = () => {
    while (sent < HUGE_BYTES) {
      sent += chunk.length
      if (!res.write(chunk)) {
        res.once('drain', pump)
        return
      }
    }
    res.end(suffix)
  }
  res.on('error', () => undefined) // the client hanging up mid-way is the expected end
  pump()
}

/** A port that accepts connections and resets each at once ("connection refused" by a live host). */
export async function startRefusingPort(): Promise<{ url: string; accepted: () => number; close(): Promise<void> }> {
  let accepted = 0
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    accepted++
    socket.on('error', () => undefined)
    socket.resetAndDestroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    accepted: () => accepted,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

/** A port that accepts connections and never says a word (a black hole), counting them. */
export async function startSilentPort(): Promise<{ url: string; origin: string; accepted: () => number; close(): Promise<void> }> {
  let accepted = 0
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    accepted++
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: `${origin}/mcp`,
    origin,
    accepted: () => accepted,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
