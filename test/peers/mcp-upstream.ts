// A real MCP server for the tests, built with the SDK on plain node:http, port 0.
// Streamable HTTP with stateful sessions (one McpServer per session), or the legacy HTTP+SSE
// transport only. With `auth`, it is an OAuth protected resource: RFC 9728 metadata, bearer JWTs
// checked against the issuer's JWKS (iss, exp, aud = this server's URL), RFC 6750 challenges,
// DPoP-bound tokens only with a proof of their key (RFC 9449, test/peers/dpop-proof.ts), and
// per-tool scope requirements answered with 403 insufficient_scope (MCP step-up).
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js'
import { bearerChallenge, createTokenVerifier, missingScopes, subjectOf } from './bearer-auth.ts'
import { createDpopProofChecker } from './dpop-proof.ts'
import { readBody } from './read-body.ts'
import { BASE_TOOLS, fillerTool, listTools, registerTool, type ToolSpec } from './upstream-tools.ts'

export interface McpUpstreamOptions {
  /** Omit for an open server. */
  auth?: {
    issuer: string
    /** Every request needs these scopes (else 403 insufficient_scope). */
    requiredScopes?: string[]
    /** `scope` of the 401 challenge. */
    challengeScope?: string
    /** PRM scopes_supported; default ['mcp:read', 'mcp:write']. */
    scopesSupported?: string[]
    /** Put resource_metadata into challenges; default true. False makes clients probe the well-known URLs. */
    challengeResourceMetadata?: boolean
    /** The scheme of the 401 challenge to a request without a token: default Bearer; DPoP as RFC 9449 §7.1 allows. */
    challengeScheme?: 'Bearer' | 'DPoP'
    /** Every DPoP proof must carry this server's nonce (RFC 9449 §9); default false. */
    demandDpopNonce?: boolean
  }
  /** Default 'streamable' (stateful sessions); 'sse' is the legacy HTTP+SSE transport only. */
  transport?: 'streamable' | 'sse'
  /**
   * 'sse' only: refuse a POST to the SSE endpoint (405) before looking at the token, as a server
   * with per-route auth does, so the first 401 a client sees is on the GET stream. Default false.
   */
  sseRoutesBeforeAuth?: boolean
  /** Extra filler tools tool_0 … tool_<n-1>; default 0. */
  toolCount?: number
  /** Tools besides the base ones (e.g. SLOW_TOOL from upstream-tools.ts). */
  extraTools?: ToolSpec[]
  /** tools/list page size (cursor pagination); default everything in one page. */
  pageSize?: number
  /** Where the RFC 9728 document is served; default 'path' (/.well-known/oauth-protected-resource/mcp). */
  protectedResourceMetadata?: 'path' | 'root' | 'none'
  /** Listen address: default 127.0.0.1; '::1' for IPv6 loopback (origin http://[::1]:PORT). */
  host?: '127.0.0.1' | '::1'
}

export interface McpUpstreamCounters {
  /** JSON-RPC messages by method that reached an MCP session (authorized). */
  initialize: number
  toolsList: number
  toolsCall: number
  /** 401 answers. */
  unauthorized: number
  /** 403 insufficient_scope answers. */
  forbidden: number
  /** Requests for a live session made with another user's token (answered 404, as for an unknown session). */
  foreignSession: number
  /** Every HTTP request to the MCP endpoint(s), answered or refused. */
  requests: number
  /** Requests presenting a DPoP-bound token that were let through (with a valid proof). */
  dpopRequests: number
  /** 401 answers asking for the DPoP nonce. */
  dpopNonceChallenges(): number
  sessionsOpen(): number
}

export interface McpUpstream {
  /** The MCP endpoint, also the OAuth resource: http://127.0.0.1:PORT/mcp (or …/sse for 'sse'). */
  url: string
  /** The protected-resource metadata URL, or undefined ('none' or an open server). */
  resourceMetadataUrl: string | undefined
  close(): Promise<void>
  counters: McpUpstreamCounters
  /** Adds a tool added_<n> and sends notifications/tools/list_changed on every open session. */
  notifyToolsChanged(): Promise<void>
  /** Forgets (and closes) every session: a request with an old session id then gets HTTP 404. */
  dropSessions(): void
  /** tools/call of `tool` answers 403 insufficient_scope unless the token has all of `scopes`. */
  setScopesRequiredFor(tool: string, scopes: string[]): void
  /**
   * The server moves to another authorization server: its protected-resource metadata names
   * `issuer`, and only that issuer's tokens are accepted from now on (MCP 2026-07-28,
   * "Authorization Server Binding").
   */
  moveTo(issuer: string): void
}

const STREAM_GRACE_MS = 5000

interface Session {
  mcp: McpServer
  transport: StreamableHTTPServerTransport | SSEServerTransport
  /** Open GET streams (streamable): server-initiated notifications only reach a client through one. */
  standaloneStreams: number
  /** Whether a GET stream was ever opened (a client that went away closes it for good). */
  everStreamed: boolean
  createdAt: number
  /** The token subject that opened the session (undefined on an open server). */
  sub: string | undefined
}

type AuthedRequest = IncomingMessage & { auth?: AuthInfo }

interface Refusal { kind: 'refused'; status: 401 | 403; challenge: string; error: string; description: string; dpopNonce?: string }
type AuthOutcome = { kind: 'ok'; authInfo: AuthInfo | undefined } | Refusal

export async function startMcpUpstream(opts: McpUpstreamOptions = {}): Promise<McpUpstream> {
  const transportKind = opts.transport ?? 'streamable'
  const prmPlacement = opts.protectedResourceMetadata ?? 'path'
  const tools: ToolSpec[] = [...BASE_TOOLS, ...(opts.extraTools ?? [])]
  for (let i = 0; i < (opts.toolCount ?? 0); i++) tools.push(fillerTool(`tool_${i}`))
  let addedCount = 0
  const sessions = new Map<string, Session>()
  const scopesRequiredFor = new Map<string, string[]>()
  const dpop = createDpopProofChecker({ demandNonce: opts.auth?.demandDpopNonce ?? false })
  const counters: McpUpstreamCounters = {
    initialize: 0, toolsList: 0, toolsCall: 0, unauthorized: 0, forbidden: 0, foreignSession: 0, requests: 0, dpopRequests: 0,
    sessionsOpen: () => sessions.size,
    dpopNonceChallenges: () => dpop.nonceChallenges,
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy(err instanceof Error ? err : undefined)
      } else {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`peer MCP server: ${String(err)}`)
      }
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const origin = `http://${opts.host === '::1' ? '[::1]' : '127.0.0.1'}:${(server.address() as AddressInfo).port}`
  const endpointPath = transportKind === 'sse' ? '/sse' : '/mcp'
  const messagesPath = '/messages'
  const url = `${origin}${endpointPath}`
  const prmPath = !opts.auth || prmPlacement === 'none'
    ? undefined
    // RFC 9728 §3.1: the well-known suffix goes between the host and the resource's path.
    : prmPlacement === 'root' ? '/.well-known/oauth-protected-resource' : `/.well-known/oauth-protected-resource${endpointPath}`
  const resourceMetadataUrl = prmPath && `${origin}${prmPath}`
  // moveTo() changes both: the server then names, and accepts tokens of, another authorization server.
  let issuer = opts.auth?.issuer
  let verifier = issuer === undefined ? undefined : createTokenVerifier(issuer, url)
  const challengeMetadata = opts.auth?.challengeResourceMetadata === false ? undefined : resourceMetadataUrl

  function createSessionServer(): McpServer {
    const mcp = new McpServer({ name: 'peer-upstream', version: '1.0.0' }, { capabilities: { tools: { listChanged: true } } })
    for (const spec of tools) registerTool(mcp, spec)
    // McpServer lists every tool at once; cursor pagination (MCP "Pagination") is ours.
    mcp.server.setRequestHandler(ListToolsRequestSchema, (request) => listTools(tools, request.params?.cursor, opts.pageSize))
    return mcp
  }

  async function authenticate(req: IncomingMessage): Promise<AuthOutcome> {
    if (!opts.auth || !verifier) return { kind: 'ok', authInfo: undefined }
    const header = req.headers.authorization
    if (!header) {
      const challenge = bearerChallenge({ resource_metadata: challengeMetadata, scope: opts.auth.challengeScope })
      return {
        kind: 'refused', status: 401, error: 'invalid_request', description: 'bearer token required',
        challenge: opts.auth.challengeScheme === 'DPoP' ? challenge.replace(/^Bearer/, 'DPoP') : challenge,
      }
    }
    const [, scheme = '', token] = /^(Bearer|DPoP)\s+(\S+)$/i.exec(header) ?? []
    let authInfo: AuthInfo
    try {
      if (!token) throw new Error('the Authorization header is not a bearer or DPoP token')
      authInfo = await verifier(token)
    } catch (err) {
      // RFC 6750 §3: error_description is printable ASCII without '"' and '\'.
      const description = (err instanceof Error ? err.message : String(err)).replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '?')
      return {
        kind: 'refused', status: 401, error: 'invalid_token', description,
        challenge: bearerChallenge({
          error: 'invalid_token', error_description: description,
          resource_metadata: challengeMetadata, scope: opts.auth.challengeScope,
        }),
      }
    }
    const jkt = (authInfo.extra?.claims as { cnf?: { jkt?: string } } | undefined)?.cnf?.jkt
    const proof = await dpop.check(req, { scheme: scheme.toLowerCase(), token, jkt, url: new URL(req.url ?? '/', origin).href })
    if (!proof.ok) {
      // RFC 9449 §7.1: the DPoP scheme's challenge; §9: with the nonce to use.
      return {
        kind: 'refused', status: 401, error: proof.error, description: proof.description,
        challenge: bearerChallenge({ error: proof.error, error_description: proof.description, resource_metadata: challengeMetadata }).replace(/^Bearer/, 'DPoP'),
        ...(proof.error === 'use_dpop_nonce' ? { dpopNonce: dpop.nonce() } : {}),
      }
    }
    if (jkt) counters.dpopRequests++
    const missing = missingScopes(authInfo, opts.auth.requiredScopes ?? [])
    if (missing.length) return insufficientScope(opts.auth.requiredScopes ?? [])
    return { kind: 'ok', authInfo }
  }

  function insufficientScope(scopes: string[]): Refusal {
    return {
      kind: 'refused', status: 403, error: 'insufficient_scope', description: 'additional scope required',
      // MCP "Scope Challenge Handling": `scope` names what this operation needs.
      challenge: bearerChallenge({
        error: 'insufficient_scope', scope: scopes.join(' '),
        resource_metadata: challengeMetadata, error_description: 'additional scope required',
      }),
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestUrl = new URL(req.url ?? '/', origin)
    const path = requestUrl.pathname

    if (prmPath && path === prmPath && req.method === 'GET') {
      sendJson(res, 200, {
        resource: url,
        authorization_servers: [issuer],
        scopes_supported: opts.auth?.scopesSupported ?? ['mcp:read', 'mcp:write'],
        bearer_methods_supported: ['header'],
        resource_name: 'peer MCP server',
      })
      return
    }
    const isMcpPath = path === endpointPath || (transportKind === 'sse' && path === messagesPath)
    if (!isMcpPath) {
      sendJson(res, 404, { error: 'not_found' })
      return
    }

    counters.requests++
    if (transportKind === 'sse' && opts.sseRoutesBeforeAuth && path === endpointPath && req.method !== 'GET') {
      await drain(req)
      res.setHeader('allow', 'GET')
      sendJson(res, 405, { error: 'method_not_allowed' })
      return
    }
    const outcome = await authenticate(req)
    if (outcome.kind === 'refused') {
      await drain(req)
      refuse(res, outcome)
      return
    }
    const authed = req as AuthedRequest
    authed.auth = outcome.authInfo

    let body: unknown
    if (req.method === 'POST') {
      try {
        body = JSON.parse(await readBody(req))
      } catch (err) {
        sendJson(res, 400, jsonRpcError(-32700, `Parse error: ${String(err)}`))
        return
      }
      const messages = Array.isArray(body) ? body : [body]
      for (const message of messages) {
        const call = toolCallOf(message)
        const needed = call && scopesRequiredFor.get(call)
        if (needed && opts.auth && missingScopes(outcome.authInfo, needed).length) {
          refuse(res, insufficientScope(needed))
          return
        }
      }
    }

    if (transportKind === 'sse') await handleSse(authed, res, requestUrl, body)
    else await handleStreamable(authed, res, body)
  }

  function refuse(res: ServerResponse, outcome: Refusal) {
    if (outcome.status === 401) counters.unauthorized++
    else counters.forbidden++
    res.setHeader('www-authenticate', outcome.challenge)
    if (outcome.dpopNonce) res.setHeader('dpop-nonce', outcome.dpopNonce)
    sendJson(res, outcome.status, { error: outcome.error, error_description: outcome.description })
  }

  function countMessages(body: unknown) {
    for (const message of Array.isArray(body) ? body : [body]) {
      const method = (message as { method?: unknown } | null)?.method
      if (method === 'initialize') counters.initialize++
      else if (method === 'tools/list') counters.toolsList++
      else if (method === 'tools/call') counters.toolsCall++
    }
  }

  async function handleStreamable(req: AuthedRequest, res: ServerResponse, body: unknown) {
    const sessionId = req.headers['mcp-session-id']
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId)
      if (session && session.sub !== subjectOf(req.auth)) counters.foreignSession++
      // MCP "Security Best Practices", session hijacking: a session belongs to the user who
      // opened it; anyone else's token does not find it.
      if (!session || session.sub !== subjectOf(req.auth)) {
        // MCP Streamable HTTP, "Session Management": an unknown or ended session is a 404.
        sendJson(res, 404, jsonRpcError(-32001, 'Session not found'))
        return
      }
      if (req.method === 'GET') {
        session.standaloneStreams++
        session.everStreamed = true
        res.on('close', () => session.standaloneStreams--)
      }
      countMessages(body)
      await (session.transport as StreamableHTTPServerTransport).handleRequest(req, res, body)
      return
    }
    if (req.method !== 'POST' || (body as { method?: unknown } | null)?.method !== 'initialize') {
      sendJson(res, 400, jsonRpcError(-32000, 'Bad Request: no session id, and not an initialize request'))
      return
    }
    const mcp = createSessionServer()
    const session: Session = {
      mcp, transport: undefined as never, standaloneStreams: 0, everStreamed: false, createdAt: Date.now(), sub: subjectOf(req.auth),
    }
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, session)
      },
    })
    session.transport = transport
    transport.onclose = () => {
      if (transport.sessionId && sessions.get(transport.sessionId) === session) sessions.delete(transport.sessionId)
    }
    await mcp.connect(transport)
    countMessages(body)
    await transport.handleRequest(req, res, body)
  }

  async function handleSse(req: AuthedRequest, res: ServerResponse, requestUrl: URL, body: unknown) {
    if (requestUrl.pathname === endpointPath) {
      if (req.method !== 'GET') {
        // A legacy server knows nothing of Streamable HTTP: a POST to its endpoint is refused,
        // which is what tells a client to fall back to HTTP+SSE.
        res.setHeader('allow', 'GET')
        sendJson(res, 405, { error: 'method_not_allowed' })
        return
      }
      const mcp = createSessionServer()
      const transport = new SSEServerTransport(messagesPath, res)
      const session: Session = {
        mcp, transport, standaloneStreams: 1, everStreamed: true, createdAt: Date.now(), sub: subjectOf(req.auth),
      }
      sessions.set(transport.sessionId, session)
      transport.onclose = () => {
        if (sessions.get(transport.sessionId) === session) sessions.delete(transport.sessionId)
      }
      await mcp.connect(transport)
      return
    }
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST')
      sendJson(res, 405, { error: 'method_not_allowed' })
      return
    }
    const session = sessions.get(requestUrl.searchParams.get('sessionId') ?? '')
    if (session && session.sub !== subjectOf(req.auth)) counters.foreignSession++
    if (!session || session.sub !== subjectOf(req.auth)) {
      sendJson(res, 404, jsonRpcError(-32001, 'Session not found'))
      return
    }
    countMessages(body)
    await (session.transport as SSEServerTransport).handlePostMessage(req, res, body)
  }

  return {
    url,
    resourceMetadataUrl,
    counters,
    async notifyToolsChanged() {
      const spec = fillerTool(`added_${++addedCount}`)
      tools.push(spec)
      await Promise.all([...sessions.values()].map(async (session) => {
        // A notification sent while a client has no GET stream open is lost (the SDK drops it):
        // give a client that connected within the last second the rest of it to open its stream.
        if (!session.everStreamed) {
          await waitFor(() => session.standaloneStreams > 0, session.createdAt + STREAM_GRACE_MS - Date.now())
        }
        // registerTool on a connected McpServer sends notifications/tools/list_changed itself.
        registerTool(session.mcp, spec)
      }))
    },
    moveTo(next) {
      issuer = next
      verifier = createTokenVerifier(next, url)
    },
    dropSessions() {
      const dropped = [...sessions.values()]
      sessions.clear()
      for (const session of dropped) {
        session.mcp.close().catch((err: unknown) => console.error('peer MCP server: closing a dropped session failed', err))
      }
    },
    setScopesRequiredFor(tool, scopes) {
      scopesRequiredFor.set(tool, scopes)
    },
    async close() {
      const open = [...sessions.values()]
      sessions.clear()
      await Promise.allSettled(open.map((session) => session.mcp.close()))
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()))
        server.closeAllConnections()
      })
    },
  }
}

function toolCallOf(message: unknown): string | undefined {
  const m = message as { method?: unknown; params?: { name?: unknown } } | null
  return m?.method === 'tools/call' && typeof m.params?.name === 'string' ? m.params.name : undefined
}

function jsonRpcError(code: number, message: string) {
  return { jsonrpc: '2.0', error: { code, message }, id: null }
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}

async function drain(req: IncomingMessage): Promise<void> {
  if (req.method === 'GET' || req.method === 'HEAD') return
  await readBody(req).catch(() => {
    // A refused request's body is only read to keep the connection reusable; an oversized one
    // just means the connection closes.
    req.destroy()
  })
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}
