// A malicious MCP server for the battery, written by hand over node:http so that it can send what
// no SDK server would: one HTTP server hosting many "personas" at /<name>/mcp, each a server of
// its own in the relay's configuration, speaking the 2026-07-28 wire (`server/discover`,
// stateless, `input_required` results) or the 2025-11-25 one (`initialize`), and each free to take
// over any answer: ReDoS output schemas, endless or trickling streams, endless pagination, odd
// JSON, lying discovery, question rounds without end, lying binary content, redirects and 401
// challenges pointing anywhere. A persona may be an OAuth protected resource of a real
// authorization server (RFC 9728 metadata, RFC 9068 JWTs checked against its JWKS): every token
// presented to it is recorded with its audience and subject, so a test can prove that no token
// meant for another server or user ever arrived.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { decodeJwt } from 'jose'
import { createTokenVerifier } from '../peers/bearer-auth.ts'

export const MODERN = '2026-07-28'
export const LEGACY = '2025-11-25'

/** One JSON-RPC request as the persona got it. */
export interface Rpc {
  method: string
  id: unknown
  params: Record<string, unknown> | undefined
}

/** What a persona's hook is handed besides the request: its own answers, to build on. */
export interface Answering {
  /** Sends a JSON-RPC result for this request (`resultType: complete` added on the 2026-07-28 wire). */
  result(result: Record<string, unknown>): void
  /** Sends a JSON-RPC error for this request. */
  error(code: number, message: string, data?: unknown): void
  /** Sends a raw HTTP answer. */
  raw(status: number, headers: Record<string, string>, body?: string | Buffer): void
  /** What this persona answers by default (discover, initialize, tools/list, tools/call echo). */
  fallback(): void
  /** The era the request came in (from its MCP-Protocol-Version header or method). */
  readonly era: 'modern' | 'legacy'
  /** The `sub` of the token it came with (a protected persona), else undefined. */
  readonly subject: unknown
}

export interface Persona {
  /** The era its default answers speak; default modern. */
  era?: 'modern' | 'legacy'
  /** Its tools (tools/list); default one `echo` tool. */
  tools?: Array<Record<string, unknown>>
  /** Takes over an answer; returning false leaves it to the default. */
  answer?: (rpc: Rpc, res: ServerResponse, answering: Answering, req: IncomingMessage) => boolean | void
  /** Takes over a GET (the 2025 era's event stream) or any request before JSON-RPC parsing. */
  http?: (req: IncomingMessage, res: ServerResponse) => boolean | void
  /** An OAuth protected resource of `issuer`: 401 with RFC 9728 metadata without a valid token. */
  protectedBy?: string
  /**
   * Which tokens it takes; default an RFC 9068 JWT of `protectedBy` for this persona (checked
   * against the issuer's JWKS). A hostile authorization server issues opaque tokens instead.
   */
  acceptToken?: (token: string) => boolean
}

/** A token that reached a persona: whom it was issued for and to whom, read from the JWT. */
export interface PresentedToken {
  persona: string
  token: string
  audience: unknown
  subject: unknown
  valid: boolean
}

export interface HostileMcpServer {
  /** http://127.0.0.1:PORT */
  origin: string
  /** The MCP endpoint of persona `name`: ORIGIN/<name>/mcp. */
  urlOf(name: string): string
  /** Adds (or replaces) a persona; returns its URL. */
  define(name: string, persona: Persona): string
  /** JSON-RPC methods each persona received, in order. */
  methods(name: string): string[]
  /** Every bearer token presented to any persona. */
  tokens: PresentedToken[]
  /** Responses still open (endless or trickling streams the relay has not let go of). */
  openResponses(): number
  /** Bytes the persona wrote in endless answers before the relay hung up. */
  bytesPumped(name: string): number
  /** What `pump` counts a persona's bytes with. */
  counter(name: string): (bytes: number) => void
  close(): Promise<void>
}

export async function startHostileMcpServer(): Promise<HostileMcpServer> {
  const personas = new Map<string, Persona>()
  const methods = new Map<string, string[]>()
  const pumped = new Map<string, number>()
  const verifiers = new Map<string, (token: string) => Promise<unknown>>()
  const tokens: PresentedToken[] = []
  const open = new Set<ServerResponse>()
  const sockets = new Set<Socket>()

  const server = createServer((req, res) => {
    open.add(res)
    res.on('close', () => open.delete(res))
    res.on('error', () => undefined) // the relay hanging up mid-answer is what many personas wait for
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`hostile peer: ${String(error)}`)
      else res.destroy()
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const urlOf = (name: string) => `${origin}/${name}/mcp`
  const metadataPathOf = (name: string) => `/.well-known/oauth-protected-resource/${name}/mcp`

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', origin).pathname
    const prm = /^\/\.well-known\/oauth-protected-resource\/([^/]+)\/mcp$/.exec(path)
    if (prm) {
      const persona = personas.get(prm[1]!)
      if (!persona?.protectedBy) return void json(res, 404, { error: 'not_found' })
      return void json(res, 200, { resource: urlOf(prm[1]!), authorization_servers: [persona.protectedBy], scopes_supported: ['mcp:read'] })
    }
    const match = /^\/([^/]+)\/mcp$/.exec(path)
    const name = match?.[1]
    const persona = name === undefined ? undefined : personas.get(name)
    if (!persona || name === undefined) return void json(res, 404, { error: 'not_found' })
    const presented = persona.protectedBy ? await authorized(name, persona, req) : undefined
    if (presented && !presented.valid) {
      req.resume()
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': `Bearer resource_metadata="${origin}${metadataPathOf(name)}"` })
      return void res.end(JSON.stringify({ error: 'invalid_token' }))
    }
    if (persona.http?.(req, res)) return
    if (req.method === 'GET') return void res.writeHead(405, { allow: 'POST' }).end()
    if (req.method === 'DELETE') return void res.writeHead(200).end()
    const text = await readLargeBody(req)
    let rpc: Rpc
    try {
      const parsed = JSON.parse(text) as { method?: unknown; id?: unknown; params?: Record<string, unknown> }
      rpc = { method: String(parsed.method), id: parsed.id, params: parsed.params }
    } catch {
      return void json(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } })
    }
    let seen = methods.get(name)
    if (!seen) methods.set(name, (seen = []))
    seen.push(rpc.method)
    const header = req.headers['mcp-protocol-version']
    const era: 'modern' | 'legacy' = header === MODERN || rpc.method === 'server/discover' ? 'modern' : 'legacy'
    const answering: Answering = {
      era,
      subject: presented?.subject,
      result: (result) => json(res, 200, { jsonrpc: '2.0', id: rpc.id, result: era === 'modern' ? { resultType: 'complete', ...result } : result }),
      error: (code, message, data) => json(res, 200, { jsonrpc: '2.0', id: rpc.id, error: { code, message, ...(data === undefined ? {} : { data }) } }),
      raw: (status, headers, body) => void res.writeHead(status, headers).end(body),
      fallback: () => answerByDefault(persona, rpc, res, answering),
    }
    if (rpc.id === undefined) return void res.writeHead(202).end() // a notification: nothing to answer
    if (persona.answer?.(rpc, res, answering, req)) return
    answering.fallback()
  }

  async function authorized(name: string, persona: Persona, req: IncomingMessage): Promise<PresentedToken | { valid: false; subject: undefined }> {
    const header = req.headers.authorization
    if (!header?.startsWith('Bearer ')) return { valid: false, subject: undefined }
    const token = header.slice('Bearer '.length)
    let claims: { aud?: unknown; sub?: unknown } = {}
    try {
      claims = decodeJwt(token)
    } catch {
      // Not a JWT: recorded with nothing known of it.
    }
    let valid: boolean
    if (persona.acceptToken) {
      valid = persona.acceptToken(token)
    } else {
      let verify = verifiers.get(name)
      if (!verify) verifiers.set(name, (verify = createTokenVerifier(persona.protectedBy!, urlOf(name))))
      valid = await verify(token).then(() => true, () => false)
    }
    const presented = { persona: name, token, audience: claims.aud, subject: claims.sub, valid }
    tokens.push(presented)
    return presented
  }

  return {
    origin,
    urlOf,
    define(name, persona) {
      personas.set(name, persona)
      return urlOf(name)
    },
    methods: (name) => methods.get(name) ?? [],
    tokens,
    openResponses: () => open.size,
    bytesPumped: (name) => pumped.get(name) ?? 0,
    counter: (name) => (bytes) => pumped.set(name, (pumped.get(name) ?? 0) + bytes),
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }

  function answerByDefault(persona: Persona, rpc: Rpc, res: ServerResponse, answering: Answering): void {
    const era = persona.era ?? 'modern'
    switch (rpc.method) {
      case 'server/discover':
        if (era === 'legacy') return answering.error(-32601, 'Method not found')
        return answering.result({
          supportedVersions: [MODERN],
          capabilities: { tools: {} },
          _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'hostile', version: '6.6.6' } },
        })
      case 'initialize':
        if (era === 'modern') return void json(res, 400, { jsonrpc: '2.0', id: rpc.id, error: { code: -32022, message: 'Unsupported protocol version', data: { supported: [MODERN] } } })
        return answering.result({ protocolVersion: LEGACY, capabilities: { tools: {} }, serverInfo: { name: 'hostile', version: '6.6.6' } })
      case 'tools/list':
        return answering.result({ tools: persona.tools ?? [ECHO], ...(era === 'modern' ? { ttlMs: 0, cacheScope: 'private' } : {}) })
      case 'tools/call': {
        const text = (rpc.params?.arguments as { text?: unknown } | undefined)?.text
        return answering.result({ content: [{ type: 'text', text: typeof text === 'string' ? text : 'echo' }] })
      }
      default:
        return answering.error(-32601, 'Method not found')
    }
  }
}

export const ECHO = { name: 'echo', description: 'Echoes its text.', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } }

export function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

/**
 * Writes `head`, then `chunk` for as long as the client reads (up to `limitBytes`), then `tail`:
 * an answer that is far too large, or, with a `limitBytes` beyond reach, one without end. Counts
 * what it wrote on `count`.
 */
export function pump(res: ServerResponse, options: { head: string; chunk: Buffer; limitBytes: number; tail?: string; count?: (bytes: number) => void }): void {
  res.write(options.head)
  let sent = 0
  const next = () => {
    while (!res.destroyed && sent < options.limitBytes) {
      sent += options.chunk.length
      options.count?.(options.chunk.length)
      if (!res.write(options.chunk)) {
        res.once('drain', next)
        return
      }
    }
    if (!res.destroyed) res.end(options.tail)
  }
  next()
}

/** Writes `piece` every `everyMs` until the client goes away: a stream that never ends and never grows. */
export function trickle(res: ServerResponse, piece: string, everyMs: number): void {
  const timer = setInterval(() => {
    if (res.destroyed) clearInterval(timer)
    else res.write(piece)
  }, everyMs)
  res.on('close', () => clearInterval(timer))
}

/** A request body as text: up to 16 MiB (the relay sends a server's requestState back whole). */
async function readLargeBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > 16 * 1024 * 1024) throw new Error('request body over 16 MiB')
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}
