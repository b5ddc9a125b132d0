import { Agent as HttpAgent, globalAgent as httpGlobalAgent, request as httpRequest, type AgentOptions, type ClientRequestArgs, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { isIP, type LookupFunction } from 'node:net'
import type { Duplex } from 'node:stream'
import { Readable } from 'node:stream'
import { readEventStreamAnswer, type EventStreamAnswer } from './event-stream-answer.ts'
import type { FetchLike } from './upstream-fetch.ts'

/** How long opening a TCP (and TLS) connection to an upstream may take. */
const CONNECT_TIMEOUT_MS = 10_000
const USER_AGENT = 'mcp-auth-relay'

export interface HttpFetch {
  readonly fetch: FetchLike
  /** Closes the kept-alive connections (at shutdown). */
  close(): void
}

/**
 * Where a new connection may go (DESIGN.md §6): for the host of `url`, the `lookup` node:net
 * connects with, which fails the connection when the address is not allowed; undefined for any
 * address. The relay gives the SSRF guard's (oauth/url-guard.ts).
 */
export type ConnectLookup = (url: URL) => LookupFunction | undefined

/**
 * The fetch under the pooled MCP transports, and under the OAuth requests too (one stack, one
 * connect-time SSRF check): node:http(s) with one keep-alive agent per scheme, answering a
 * standard Response whose body streams as it arrives. Node's global fetch (undici)
 * costs about 0.15 ms of CPU more per request, a quarter of the relay's work on a warm call
 * (docs/benchmarks.md); its callers use only the part of fetch implemented here: method,
 * headers, a string, form or byte body, an AbortSignal, and redirects left to the caller (the SDK
 * follows them itself, within the origin). Keep-alive honours the server's `Keep-Alive: timeout`
 * hint (Node's agentKeepAliveTimeoutBuffer), so an idle connection is not reused as it closes.
 * Unlike undici there is no body timeout: a session's event stream may stay quiet for hours.
 * Proxies (DESIGN.md §6): the agents take Node's own environment proxy settings
 * (NODE_USE_ENV_PROXY with HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as the global agents and fetch
 * do: an https target goes through `CONNECT host:port` with TLS to the target inside the tunnel,
 * whatever the host form; an http target is sent to the proxy as an absolute-URI request.
 *
 * Every connection is checked with `connectLookup` before any byte is sent:
 * - a host name when the agent opens a socket to it (node:net's `lookup`, after DNS), so a name
 *   that resolved to a public address when a URL was checked and resolves to a private one now
 *   (DNS rebinding) is refused; a kept-alive connection was checked when it was opened;
 * - an IP literal before each request (nothing to resolve, so nothing changes between requests):
 *   node:net connects to a literal without a lookup.
 * Through a proxy the relay never resolves the target: the proxy does. A literal target is still
 * checked here (the address the proxy will reach is the one in the URL); a name is checked only
 * when its URL was learned (oauth/url-guard.ts `check`), and what it resolves to at the proxy is
 * the proxy's to police (docs/security.md).
 */
export function createHttpFetch(deps: { connectLookup?: ConnectLookup } = {}): HttpFetch {
  // Node gives both global agents the same proxyEnv (process.env with NODE_USE_ENV_PROXY, else
  // none); Agent#options is real but untyped.
  const { proxyEnv } = (httpGlobalAgent as HttpAgent & { options: AgentOptions }).options
  const agents = { 'http:': new HttpAgent({ keepAlive: true, proxyEnv }), 'https:': new HttpsAgent({ keepAlive: true, proxyEnv }) }
  if (deps.connectLookup) {
    checkConnections(agents['http:'], 'http:', deps.connectLookup)
    checkConnections(agents['https:'], 'https:', deps.connectLookup)
  }

  function fetchOverHttp(input: string | URL, init: RequestInit = {}): Promise<Response> {
    const url = new URL(input)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return Promise.reject(new TypeError(`fetch: unsupported scheme ${url.protocol}`))
    const signal = init.signal ?? undefined
    if (signal?.aborted) return Promise.reject(signal.reason)
    const method = (init.method ?? 'GET').toUpperCase()
    const headers: OutgoingHttpHeaders = { 'user-agent': USER_AGENT }
    // Fetch's default for a form body (openid-client sets it itself).
    if (init.body instanceof URLSearchParams) headers['content-type'] = 'application/x-www-form-urlencoded;charset=UTF-8'
    // The transports hand over a Headers already (copying it cost a Headers a request).
    const given = init.headers instanceof Headers ? init.headers : new Headers(init.headers)
    given.forEach((value, name) => {
      headers[name] = value
    })
    const body = bodyBytes(init.body)
    if (body !== undefined) headers['content-length'] = body.byteLength
    const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1')

    const attempt = (retried: boolean): Promise<Response> => new Promise((resolve, reject) => {
      let answered = false
      const send = url.protocol === 'https:' ? httpsRequest : httpRequest
      const req = send(
        {
          protocol: url.protocol,
          hostname,
          port: url.port,
          path: `${url.pathname}${url.search}`,
          method,
          headers,
          agent: agents[url.protocol as 'http:' | 'https:'],
          ...(signal ? { signal } : {}),
        },
        (res) => {
          answered = true
          if (method !== 'POST' || !isEventStream(res)) return resolve(toResponse(res, method))
          readEventStreamAnswer(res).then((answer) => resolve(answerResponse(res, answer)), reject)
        },
      )
      req.once('error', (error) => {
        if (signal?.aborted) return reject(signal.reason)
        // A kept-alive connection the server closed just as it was reused (its idle timeout raced
        // ours, e.g. with the event loop busy): a server closing an idle connection has read
        // nothing of this request, so it is sent once more on a new connection, as Node's docs
        // advise (request.reusedSocket). A fresh connection that breaks is not retried.
        if (!retried && !answered && req.reusedSocket && isResetBeforeAnswer(error)) return attempt(true).then(resolve, reject)
        reject(new TypeError('fetch failed', { cause: error }))
      })
      req.once('socket', (socket) => {
        if (!socket.connecting) return
        const timer = setTimeout(() => req.destroy(new Error(`connecting to ${url.host} took longer than ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS)
        socket.once('connect', () => clearTimeout(timer))
        socket.once('close', () => clearTimeout(timer))
      })
      req.end(body)
    })
    const literalLookup = isIP(hostname) !== 0 ? deps.connectLookup?.(url) : undefined
    return literalLookup ? checkLiteral(literalLookup, hostname).then(() => attempt(false)) : attempt(false)
  }

  return {
    fetch: fetchOverHttp,
    close() {
      agents['http:'].destroy()
      agents['https:'].destroy()
    },
  }
}

/**
 * The agent's new sockets to a host name resolve through `connectLookup`'s lookup. The agent's
 * own createConnection does the rest, with its callback: through a proxy it answers the socket
 * only once the CONNECT tunnel and the TLS inside it are up. IP literals are not looked up by
 * node:net; fetchOverHttp checks them before the request.
 */
function checkConnections(agent: HttpAgent, protocol: 'http:' | 'https:', connectLookup: ConnectLookup): void {
  const create = agent.createConnection.bind(agent) as (options: ClientRequestArgs, callback?: (error: Error | null, socket?: Duplex) => void) => Duplex | null | undefined
  agent.createConnection = ((options: ClientRequestArgs, callback: (error: Error | null, socket?: Duplex) => void) => {
    const host = options.host ?? options.hostname ?? 'localhost'
    const lookup = isIP(host) === 0 ? connectLookup(new URL(`${protocol}//${host}:${options.port}`)) : undefined
    return create(lookup ? { ...options, lookup } : options, callback)
  }) as HttpAgent['createConnection']
}

/** Resolves when `connectLookup` lets a connection go to the literal `address`; rejects as a failed connection does. */
function checkLiteral(lookup: LookupFunction, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    lookup(address, { all: true }, (error) => (error ? reject(new TypeError('fetch failed', { cause: error })) : resolve()))
  })
}

/** The connection broke (reset, or closed under the write): with no answer yet, the request was not read. */
function isResetBeforeAnswer(error: Error): boolean {
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ECONNRESET' || code === 'EPIPE'
}

function bodyBytes(body: RequestInit['body']): Uint8Array | undefined {
  if (body === undefined || body === null) return undefined
  if (typeof body === 'string') return Buffer.from(body)
  if (body instanceof URLSearchParams) return Buffer.from(body.toString())
  if (body instanceof Uint8Array) return body
  if (body instanceof ArrayBuffer) return new Uint8Array(body)
  // The MCP transports and the SDK's registration send JSON text, openid-client a form; anything
  // else is a caller this fetch was not built for.
  throw new TypeError('fetch: only string and byte bodies are supported')
}

/** Responses whose body is already read whole (bounded, in memory), with that body: nothing is left to count or abort. */
const wholeBodies = new WeakMap<Response, string>()

/** The body of a response read whole here, to check without reading it again; undefined for a streaming one. */
export function wholeBodyOf(response: Response): string | undefined {
  return wholeBodies.get(response)
}

function isEventStream(res: IncomingMessage): boolean {
  return res.statusCode === 200 && (res.headers['content-type']?.includes('text/event-stream') ?? false)
}

function headersOf(res: IncomingMessage): Headers {
  const headers = new Headers()
  for (let i = 0; i < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!)
  return headers
}

/** A POSTed message's event-stream answer (event-stream-answer.ts): as the equivalent JSON, or as it came. */
function answerResponse(res: IncomingMessage, answer: EventStreamAnswer): Response {
  const headers = headersOf(res)
  if (answer.kind === 'stream') return new Response(answer.body, { status: 200, statusText: res.statusMessage ?? '', headers })
  headers.set('content-type', 'application/json')
  headers.set('content-length', String(Buffer.byteLength(answer.text)))
  headers.delete('transfer-encoding')
  const response = new Response(answer.text, { status: 200, statusText: res.statusMessage ?? '', headers })
  wholeBodies.set(response, answer.text)
  return response
}

function toResponse(res: IncomingMessage, method: string): Response {
  const headers = headersOf(res)
  const status = res.statusCode ?? 0
  const empty = method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200)
  if (empty) res.resume()
  const body = empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>)
  return new Response(body, { status, statusText: res.statusMessage ?? '', headers })
}
