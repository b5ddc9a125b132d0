// A real MCP 2026-07-28 server for the tests, built with @modelcontextprotocol/server 2.x:
// stateless (one McpServer per HTTP request, createMcpHandler), `server/discover`, questions as
// `input_required` results (forms, URL mode, several at once, requestState, rounds without end), SEP-2243 header mirroring (`x-mcp-header`), SEP-2549 caching hints, binary content. With
// `auth` it is an OAuth protected resource as mcp-upstream.ts is: RFC 9728 metadata, bearer JWTs
// checked against the issuer's JWKS, RFC 6750 challenges, 403 insufficient_scope per tool, DPoP-bound
// tokens only with a proof of their key (RFC 9449, dpop-proof.ts). By
// default it speaks 2026-07-28 only (a 2025 `initialize` is refused: HTTP 400, -32022).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createMcpHandler, inputRequired, McpServer, type CallToolResult, type InputRequiredResult } from '@modelcontextprotocol/server'
import * as z from 'zod'
import { binaryBytes } from './answering-server.ts'
import { bearerChallenge, createTokenVerifier, missingScopes } from './bearer-auth.ts'
import { createDpopProofChecker } from './dpop-proof.ts'
import { readBody } from './read-body.ts'

export interface ModernUpstreamOptions {
  /** DPoP-bound tokens (`cnf.jkt`) are let through only with the DPoP scheme and a fresh proof of their key. */
  auth?: { issuer: string; scopesSupported?: string[]; demandDpopNonce?: boolean }
  /** SEP-2549 hints on tools/list; default the SDK's (ttlMs 0, cacheScope private). */
  listHints?: { ttlMs?: number; cacheScope?: 'public' | 'private' }
  /** Also serve 2025-era clients (statelessly), as the SDK does by default; default false. */
  legacy?: boolean
  /**
   * `echo` serves that tool alone (the bench: every request builds the server anew, so each
   * tool's registration is paid per request, and `misdeclared` warns on each); `demo` echo,
   * `whoami` and `greet` (npm run demo); default all.
   */
  tools?: 'all' | 'echo' | 'demo'
}

export interface SeenRequest {
  method: string
  protocolVersion: string | undefined
  mcpMethod: string | undefined
  mcpName: string | undefined
  /** Mcp-Param-* headers, lower-cased names. */
  params: Record<string, string>
  /** The JSON-RPC id, and what the body's params carried. */
  id: unknown
  meta: Record<string, unknown> | undefined
  inputResponses: unknown
  requestState: unknown
  authorized: boolean
}

export interface ModernUpstream {
  /** http://127.0.0.1:PORT/mcp */
  url: string
  resourceMetadataUrl: string
  /** Every POST to the MCP endpoint, in order. */
  seen: SeenRequest[]
  /** Requests presenting a DPoP-bound token with a valid proof, and 401s asking for the DPoP nonce. */
  dpop: { requests: number; nonceChallenges(): number }
  /** Every HTTP request to the MCP endpoint (any method), answered or refused; every TCP connection accepted. */
  readonly counters: { requests: number; connections: number }
  /** tools/call answers 403 insufficient_scope for `tool` unless the token has all of `scopes`. */
  setScopesRequiredFor(tool: string, scopes: string[]): void
  close(): Promise<void>
}

/** The size of `picture`'s image, over the relay's default TOOL_RESULT_INLINE_BYTES. */
export const MODERN_PICTURE_BYTES = 50_000

const nameSchema = { type: 'object' as const, properties: { name: { type: 'string' as const, title: 'Your name', minLength: 1 } }, required: ['name'] }
const colourSchema = {
  type: 'object' as const,
  properties: { colour: { type: 'string' as const, enum: ['red', 'green', 'blue'] }, shade: { type: 'integer' as const, minimum: 1, maximum: 9 } },
  required: ['colour'],
}

function buildServer(options: ModernUpstreamOptions, sub: string | undefined): McpServer {
  const server = new McpServer(
    { name: 'modern-peer', version: '2.0.0' },
    { capabilities: { tools: {} }, ...(options.listHints ? { cacheHints: { 'tools/list': options.listHints } } : {}) },
  )
  const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] })

  server.registerTool('echo', { description: 'Echoes its text.', inputSchema: z.object({ text: z.string() }) }, async ({ text: said }) => text(said))
  if (options.tools === 'echo') return server

  server.registerTool(
    'whoami',
    { description: 'Says whose token it got.', inputSchema: z.object({}), outputSchema: z.object({ sub: z.string().nullable() }) },
    async () => ({ content: [{ type: 'text', text: JSON.stringify({ sub: sub ?? null }) }], structuredContent: { sub: sub ?? null } }),
  )

  // A form with requestState: the state names the round; the answer is checked on re-entry.
  server.registerTool(
    'greet',
    { description: 'Asks the user for their name, then greets them.', inputSchema: z.object({ formal: z.boolean().optional() }), outputSchema: z.object({ greeting: z.string() }) },
    async ({ formal }, ctx): Promise<CallToolResult | InputRequiredResult> => {
      const answer = ctx.mcpReq.inputResponses?.name as { action?: string; content?: { name?: unknown } } | undefined
      const state = ctx.mcpReq.requestState<string>()
      if (answer?.action === 'decline' || answer?.action === 'cancel') {
        return { content: [{ type: 'text', text: `The user chose ${answer.action}.` }], structuredContent: { greeting: `(${answer.action})` }, isError: true }
      }
      if (answer?.action === 'accept' && typeof answer.content?.name === 'string' && state === 'greet-round-1') {
        const greeting = `${formal ? 'Good day' : 'Hello'}, ${answer.content.name}!`
        return { content: [{ type: 'text', text: greeting }], structuredContent: { greeting } }
      }
      return inputRequired({ inputRequests: { name: inputRequired.elicit({ message: 'What is your name?', requestedSchema: nameSchema }) }, requestState: 'greet-round-1' })
    },
  )

  if (options.tools === 'demo') return server

  // Two requests at once, and no requestState.
  server.registerTool('paint', { description: 'Asks for a name and a colour.', inputSchema: z.object({}) }, async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
    const name = ctx.mcpReq.inputResponses?.name as { content?: { name?: string } } | undefined
    const colour = ctx.mcpReq.inputResponses?.colour as { content?: { colour?: string; shade?: number } } | undefined
    if (name?.content?.name && colour?.content?.colour) {
      return text(`${name.content.name} paints in ${colour.content.colour}${colour.content.shade ? ` shade ${colour.content.shade}` : ''}.`)
    }
    return inputRequired({
      inputRequests: {
        name: inputRequired.elicit({ message: 'Who is painting?', requestedSchema: nameSchema }),
        colour: inputRequired.elicit({ message: 'Which colour?', requestedSchema: colourSchema }),
      },
    })
  })

  // URL mode: the user finishes on a page, then the call continues.
  server.registerTool('consent', { description: 'Needs the user to approve on a page.', inputSchema: z.object({}) }, async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
    const answer = ctx.mcpReq.inputResponses?.approve as { action?: string } | undefined
    if (answer?.action === 'accept') return text('Approved.')
    return inputRequired({ inputRequests: { approve: inputRequired.elicitUrl({ message: 'Approve the export on the consent page.', url: 'https://consent.example.com/approve?id=7' }) } })
  })

  // Only state, no requests: the client may retry at once.
  server.registerTool('stateful', { description: 'Needs one more round with its state.', inputSchema: z.object({}) }, async (_args, ctx): Promise<CallToolResult | InputRequiredResult> => {
    if (ctx.mcpReq.requestState<string>() === 'second-pass') return text('done in two passes')
    return inputRequired({ requestState: 'second-pass' })
  })

  // A server that keeps asking.
  server.registerTool('pester', { description: 'Never satisfied.', inputSchema: z.object({}) }, async () =>
    inputRequired({ inputRequests: { again: inputRequired.elicit({ message: 'Once more?', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } }) } }),
  )

  server.registerTool('slow', { description: 'Answers after ms milliseconds.', inputSchema: z.object({ ms: z.number().int().min(0) }) }, async ({ ms }, ctx) => {
    await sleep(ms, undefined, { signal: ctx.mcpReq.signal }).catch(() => undefined)
    return text(`slept ${ms} ms`)
  })

  server.registerTool(
    'picture',
    { description: 'Returns a large PNG.', inputSchema: z.object({}) },
    async () => ({ content: [{ type: 'image', mimeType: 'image/png', data: binaryBytes(MODERN_PICTURE_BYTES).toString('base64') }] }),
  )

  server.registerTool(
    'described',
    {
      title: 'Described by the v2 SDK',
      description: 'Carries a title, annotations and an output schema.',
      inputSchema: z.object({}),
      outputSchema: z.object({ total: z.number() }),
      annotations: { readOnlyHint: true, destructiveHint: false },
    },
    async () => ({ content: [{ type: 'text', text: '{"total":3}' }], structuredContent: { total: 3 } }),
  )

  // SEP-2243: `region` is mirrored into an Mcp-Param-Region header.
  server.registerTool(
    'regional',
    {
      description: 'Runs in the region given.',
      inputSchema: z.object({ region: z.string().meta({ 'x-mcp-header': 'Region' }), query: z.string() }),
    },
    async ({ region, query }) => text(`${query} in ${region}`),
  )
  // An invalid declaration (on an object-typed property): clients leave the tool out.
  server.registerTool(
    'misdeclared',
    { description: 'Declares a header on an object.', inputSchema: z.object({ filter: z.object({ a: z.string() }).meta({ 'x-mcp-header': 'Filter' }) }) },
    async () => text('should never be listed'),
  )
  return server
}

export async function startModernUpstream(options: ModernUpstreamOptions = {}): Promise<ModernUpstream> {
  const seen: SeenRequest[] = []
  const counters = { requests: 0, connections: 0 }
  const scopesRequiredFor = new Map<string, string[]>()
  const dpopChecker = createDpopProofChecker({ demandNonce: options.auth?.demandDpopNonce ?? false })
  const dpop = { requests: 0, nonceChallenges: () => dpopChecker.nonceChallenges }
  // Per request, the verified subject for the factory (createMcpHandler's authInfo pass-through).
  const handler = createMcpHandler(({ authInfo }) => buildServer(options, authInfo?.extra?.sub as string | undefined), {
    legacy: options.legacy ? 'stateless' : 'reject',
    responseMode: 'json',
  })

  let url = ''
  let resourceMetadataUrl = ''
  let verifier: ReturnType<typeof createTokenVerifier> | undefined

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) res.destroy(error instanceof Error ? error : undefined)
      else res.writeHead(500, { 'content-type': 'text/plain' }).end(`modern peer: ${String(error)}`)
    })
  })

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', url).pathname
    if (options.auth && path === '/.well-known/oauth-protected-resource/mcp') {
      sendJson(res, 200, { resource: url, authorization_servers: [options.auth.issuer], scopes_supported: options.auth.scopesSupported ?? ['mcp:read', 'mcp:write'] })
      return
    }
    if (path !== '/mcp') {
      sendJson(res, 404, { error: 'not_found' })
      return
    }
    counters.requests++
    const body = req.method === 'POST' ? await readBody(req) : ''
    let message: { id?: unknown; method?: string; params?: Record<string, unknown> } = {}
    try {
      message = body ? JSON.parse(body) : {}
    } catch {
      // Malformed JSON goes on to the SDK, which answers it.
    }
    const record: SeenRequest = {
      method: req.method ?? '',
      protocolVersion: header(req, 'mcp-protocol-version'),
      mcpMethod: header(req, 'mcp-method'),
      mcpName: header(req, 'mcp-name'),
      params: Object.fromEntries(Object.entries(req.headers).filter(([name]) => name.startsWith('mcp-param-')).map(([name, value]) => [name, String(value)])),
      id: message.id,
      meta: message.params?._meta as Record<string, unknown> | undefined,
      inputResponses: message.params?.inputResponses,
      requestState: message.params?.requestState,
      authorized: false,
    }
    if (req.method === 'POST') seen.push(record)

    let authInfo: { token: string; clientId: string; scopes: string[]; extra: { sub: unknown } } | undefined
    if (options.auth && verifier) {
      const [, scheme = '', token] = /^(Bearer|DPoP)\s+(\S+)$/i.exec(req.headers.authorization ?? '') ?? []
      let jkt: string | undefined
      try {
        if (!token) throw new Error('bearer token required')
        const info = await verifier(token)
        const claims = info.extra?.claims as { sub?: unknown; cnf?: { jkt?: string } } | undefined
        jkt = claims?.cnf?.jkt
        authInfo = { token, clientId: info.clientId, scopes: info.scopes, extra: { sub: claims?.sub } }
      } catch (error) {
        const description = (error instanceof Error ? error.message : String(error)).replace(/["\\]/g, "'").replace(/[^\x20-\x7e]/g, '?')
        res.writeHead(401, {
          'www-authenticate': bearerChallenge({ error: token ? 'invalid_token' : undefined, error_description: description, resource_metadata: resourceMetadataUrl }),
          'content-type': 'application/json',
        })
        res.end(JSON.stringify({ error: 'invalid_token' }))
        return
      }
      const proof = await dpopChecker.check(req, { scheme: scheme.toLowerCase(), token, jkt, url })
      if (!proof.ok) {
        // RFC 9449 §7.1: the DPoP scheme's challenge; §9: with the nonce to use.
        const nonce = proof.error === 'use_dpop_nonce' ? dpopChecker.nonce() : undefined
        res.writeHead(401, {
          'www-authenticate': bearerChallenge({ error: proof.error, error_description: proof.description, resource_metadata: resourceMetadataUrl }).replace(/^Bearer/, 'DPoP'),
          ...(nonce ? { 'dpop-nonce': nonce } : {}),
          'content-type': 'application/json',
        })
        res.end(JSON.stringify({ error: proof.error }))
        return
      }
      if (jkt) dpop.requests++
      record.authorized = true
      const needed = message.method === 'tools/call' ? scopesRequiredFor.get(String(message.params?.name)) : undefined
      if (needed && missingScopes({ token: authInfo.token, clientId: authInfo.clientId, scopes: authInfo.scopes }, needed).length > 0) {
        res.writeHead(403, {
          'www-authenticate': bearerChallenge({ error: 'insufficient_scope', scope: needed.join(' '), resource_metadata: resourceMetadataUrl }),
          'content-type': 'application/json',
        })
        res.end(JSON.stringify({ error: 'insufficient_scope' }))
        return
      }
    }
    const request = new Request(`${url}`, {
      method: req.method ?? 'GET',
      headers: Object.entries(req.headers).flatMap(([name, value]) => (value === undefined ? [] : [[name, String(value)] as [string, string]])),
      ...(req.method === 'POST' ? { body } : {}),
    })
    const response = await handler.fetch(request, authInfo ? { authInfo } : undefined)
    res.writeHead(response.status, Object.fromEntries(response.headers))
    res.end(Buffer.from(await response.arrayBuffer()))
  }

  server.on('connection', () => counters.connections++)
  // Connections stay open a minute between requests (Node's default is 5 s), so a test that counts
  // them does not see one closed by a slow moment of a loaded machine.
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  url = `${origin}/mcp`
  resourceMetadataUrl = `${origin}/.well-known/oauth-protected-resource/mcp`
  if (options.auth) verifier = createTokenVerifier(options.auth.issuer, url)

  return {
    url,
    resourceMetadataUrl,
    seen,
    dpop,
    counters,
    setScopesRequiredFor: (tool, scopes) => void scopesRequiredFor.set(tool, scopes),
    async close() {
      await handler.close()
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      })
    },
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}
