// An MCP server on a code base other than the official SDK: tmcp (pinned in package.json), its
// own JSON-RPC stack and Streamable HTTP transport, on node:http at a free loopback port. Its
// tools answer a URL elicitation error (-32042), return a large image, and carry a title,
// annotations and an output schema, so the relay's handling is not only ever tried against the
// SDK that the relay itself is built on. tmcp speaks MCP 2026-07-28 (server/discover, questions as
// input_required results), so the relay talks to it in that revision. (tmcp prints each error a tool throws to stderr, which
// it offers no way to turn off: the -32042 tests leave two such warnings in the test output.)
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { ZodJsonSchemaAdapter } from '@tmcp/adapter-zod'
import { HttpTransport } from '@tmcp/transport-http'
import { McpError, McpServer } from 'tmcp'
import * as z from 'zod'
import { binaryBytes } from './answering-server.ts'

export interface TmcpServer {
  /** http://127.0.0.1:PORT/mcp */
  url: string
  close(): Promise<void>
}

/** The size of `chart`'s image, over the relay's default TOOL_RESULT_INLINE_BYTES. */
export const TMCP_CHART_BYTES = 100_000

export async function startTmcpServer(): Promise<TmcpServer> {
  const mcp = new McpServer(
    { name: 'tmcp-peer', version: '1.0.0', description: 'A tmcp server for the relay tests' },
    { adapter: new ZodJsonSchemaAdapter(), capabilities: { tools: {} } },
  )

  mcp.tool(
    {
      name: 'consent',
      description: 'Answers -32042: the user must approve on a page first (with no url: an error without its data).',
      schema: z.object({ url: z.string().optional() }),
    },
    ({ url }) => {
      // MCP 2025-11-25 "URL Elicitation Required Error", built by hand: tmcp has no helper for it.
      const data = url === undefined ? undefined : { elicitations: [{ mode: 'url', url, message: 'Approve the export on the consent page.', elicitationId: 'tmcp-consent-1' }] }
      throw new McpError(-32042, 'This export needs your approval first.', data)
    },
  )

  mcp.tool({ name: 'chart', description: 'Returns a large PNG chart.' }, () => ({
    content: [{ type: 'image', mimeType: 'image/png', data: binaryBytes(TMCP_CHART_BYTES).toString('base64') }],
  }))

  mcp.tool(
    {
      name: 'described',
      title: 'Described by tmcp',
      description: 'Carries a title, annotations and an output schema.',
      outputSchema: z.object({ total: z.number() }),
      annotations: { readOnlyHint: true, destructiveHint: false, openWorldHint: false },
    },
    () => ({ content: [{ type: 'text', text: '{"total":3}' }], structuredContent: { total: 3 } }),
  )

  // MCP 2026-07-28 (SEP-2322): tmcp asks through `elicitation()`, which for a stateless request
  // becomes an `input_required` result with tmcp's own requestState.
  mcp.tool(
    { name: 'rename', description: 'Asks for the new name, then renames.', schema: z.object({ id: z.string() }), replayable: true },
    async ({ id }) => {
      const answer = await mcp.elicitation('What should the new name be?', z.object({ name: z.string() }), { key: 'name' })
      if (answer.action !== 'accept' || !answer.content) return { content: [{ type: 'text', text: `Renaming ${id} was ${answer.action}ed.` }], isError: true }
      return { content: [{ type: 'text', text: `Renamed ${id} to ${answer.content.name}.` }] }
    },
  )

  const transport = new HttpTransport(mcp, { path: '/mcp' })
  const server = createServer((req, res) => {
    answer(transport, req, res).catch((error: unknown) => {
      if (res.headersSent) res.destroy()
      else res.writeHead(500, { 'content-type': 'text/plain' }).end(`tmcp peer: ${String(error)}`)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: `${origin}/mcp`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

/** node:http to the web Request/Response tmcp's transport speaks, streaming the answer (SSE) through. */
async function answer(transport: HttpTransport, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const abort = new AbortController()
  res.on('close', () => abort.abort())
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === 'string') headers.set(name, value)
    else if (Array.isArray(value)) for (const item of value) headers.append(name, item)
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
  const request = new Request(`http://${req.headers.host ?? '127.0.0.1'}${req.url ?? '/'}`, {
    method: req.method ?? 'GET',
    headers,
    signal: abort.signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream, duplex: 'half' } : {}),
  } as RequestInit)
  const response = (await transport.respond(request)) ?? new Response(null, { status: 404 })
  res.writeHead(response.status, Object.fromEntries(response.headers))
  if (!response.body) {
    res.end()
    return
  }
  Readable.fromWeb(response.body as import('node:stream/web').ReadableStream).on('error', () => res.destroy()).pipe(res)
}
