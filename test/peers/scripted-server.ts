// A tiny real HTTP server whose answers a test scripts path by path: for metadata that no
// well-behaved authorization server would publish (no S256, a wrong issuer, endpoints on hosts
// the relay must not reach). It records every request and counts every TCP connection, so a test
// can prove that nothing was sent to it at all. With `tls` it speaks https only.
import { createServer, type IncomingMessage, type RequestListener } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { readBody } from './read-body.ts'

export interface ScriptedAnswer {
  status?: number
  headers?: Record<string, string>
  /** Sent as application/json. */
  json?: unknown
}

export interface ScriptedServer {
  /** http://127.0.0.1:PORT (https:// with `tls`) */
  origin: string
  port: number
  /** Every request, in order: method, path (with query), and its body once read. */
  requests: Array<{ method: string; path: string; body?: string }>
  /** TCP connections accepted, including ones that never sent a request (a TLS handshake, say). */
  connections(): number
  /** Answers `method` (default any) on `path` (without query) with `answer`; unscripted paths answer 404. */
  route(path: string, answer: ScriptedAnswer | ((request: IncomingMessage) => ScriptedAnswer), method?: string): void
  close(): Promise<void>
}

/** `tls`: the PEM key and certificate to serve https with (test/peers/self-signed.ts). */
export async function startScriptedServer(options: { tls?: { key: string; cert: string } } = {}): Promise<ScriptedServer> {
  const routes = new Map<string, ScriptedAnswer | ((request: IncomingMessage) => ScriptedAnswer)>()
  const requests: ScriptedServer['requests'] = []
  let connections = 0
  const respond: RequestListener = (req, res) => {
    const record: ScriptedServer['requests'][number] = { method: req.method ?? '', path: req.url ?? '' }
    requests.push(record)
    const path = new URL(req.url ?? '/', 'http://peer').pathname
    const scripted = routes.get(`${req.method} ${path}`) ?? routes.get(`* ${path}`)
    // The body is read (and kept, for tests that check what was sent) so that keep-alive
    // connections stay usable.
    readBody(req).then(
      (body) => {
        record.body = body
        const answer = typeof scripted === 'function' ? scripted(req) : (scripted ?? { status: 404, json: { error: 'not_found' } })
        res.writeHead(answer.status ?? 200, { ...(answer.json === undefined ? {} : { 'content-type': 'application/json' }), ...answer.headers })
        res.end(answer.json === undefined ? undefined : JSON.stringify(answer.json))
      },
      (error: unknown) => res.destroy(error instanceof Error ? error : undefined),
    )
  }
  const server = options.tls ? createHttpsServer(options.tls, respond) : createServer(respond)
  // Every TCP connection, for https one that never finishes its handshake too.
  server.on('connection', () => connections++)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  return {
    origin: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    connections: () => connections,
    route(path, answer, method = '*') {
      routes.set(`${method} ${path}`, answer)
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

/** An MCP endpoint that answers every request 401 with an RFC 6750 / RFC 9728 challenge. */
export function protectedMcpEndpoint(resourceMetadataUrl: string | undefined, scope?: string): ScriptedAnswer {
  const params = [resourceMetadataUrl && `resource_metadata="${resourceMetadataUrl}"`, scope && `scope="${scope}"`].filter(Boolean)
  return {
    status: 401,
    headers: { 'www-authenticate': params.length ? `Bearer ${params.join(', ')}` : 'Bearer' },
    json: { error: 'invalid_token', error_description: 'bearer token required' },
  }
}
