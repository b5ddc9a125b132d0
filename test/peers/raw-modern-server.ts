// A 2026-07-28 MCP server written by hand, JSON-RPC over plain node:http, for what the SDK's own
// server will not send: results without `resultType` (SEP-2322 calls them complete), questions
// the relay never declared it could answer (roots, sampling), an `input_required` result with
// neither requests nor state. Each tool is a function from the request's params to its raw result.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { readBody } from './read-body.ts'

export type RawTool = (params: { arguments?: Record<string, unknown>; inputResponses?: Record<string, unknown>; requestState?: string }) => unknown

export interface RawModernServer {
  /** http://127.0.0.1:PORT/mcp */
  url: string
  /** Every JSON-RPC request, in order: method, id and params. */
  requests: Array<{ method: string; id: unknown; params: Record<string, unknown> | undefined }>
  close(): Promise<void>
}

const PROTOCOL = '2026-07-28'

export async function startRawModernServer(tools: Record<string, RawTool>): Promise<RawModernServer> {
  const requests: RawModernServer['requests'] = []
  const server = createServer((req, res) => {
    const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    if (req.method !== 'POST') return void send(405, { error: 'method not allowed' })
    readBody(req).then(
      (text) => {
        const message = JSON.parse(text) as { id?: unknown; method: string; params?: Record<string, unknown> }
        requests.push({ method: message.method, id: message.id, params: message.params })
        const answer = (result: unknown) => send(200, { jsonrpc: '2.0', id: message.id, result })
        switch (message.method) {
          case 'server/discover':
            return answer({
              resultType: 'complete',
              supportedVersions: [PROTOCOL],
              capabilities: { tools: {} },
              ttlMs: 0,
              cacheScope: 'private',
              _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'raw-modern', version: '1.0.0' } },
            })
          case 'tools/list':
            return answer({
              resultType: 'complete',
              ttlMs: 0,
              cacheScope: 'private',
              tools: Object.keys(tools).map((name) => ({ name, description: `raw tool ${name}`, inputSchema: { type: 'object' } })),
            })
          case 'tools/call': {
            const tool = tools[String(message.params?.name)]
            if (!tool) return send(200, { jsonrpc: '2.0', id: message.id, error: { code: -32602, message: `Unknown tool: ${String(message.params?.name)}` } })
            return answer(tool(message.params as Parameters<RawTool>[0]))
          }
          default:
            return send(200, { jsonrpc: '2.0', id: message.id ?? null, error: { code: -32601, message: 'Method not found' } })
        }
      },
      (error: unknown) => res.destroy(error instanceof Error ? error : undefined),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}
