// The peer MCP server's tools: whoami (whose token arrived), echo, fail, and filler tools,
// registered on an McpServer per session; tools/list is served here with cursor pagination.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { ErrorCode, McpError, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js'
import type { JWTPayload } from 'jose'
import * as z from 'zod'

export interface ToolSpec {
  name: string
  description: string
  input: z.ZodRawShape
  output?: z.ZodRawShape
  run(args: Record<string, unknown>, authInfo: AuthInfo | undefined): CallToolResult | Promise<CallToolResult>
}

const whoamiOutput = {
  sub: z.string().nullable(),
  aud: z.union([z.string(), z.array(z.string())]).optional(),
  scope: z.string().optional(),
  client_id: z.string().optional(),
}

export const BASE_TOOLS: ToolSpec[] = [
  {
    name: 'whoami',
    description: 'Says whose access token this server received.',
    input: {},
    output: whoamiOutput,
    run: (_args, authInfo) => {
      const claims = authInfo?.extra?.claims as JWTPayload | undefined
      const who = claims
        ? { sub: claims.sub ?? null, aud: claims.aud, scope: claims.scope as string | undefined, client_id: claims.client_id as string | undefined }
        : { sub: null }
      return { content: [{ type: 'text', text: JSON.stringify(who) }], structuredContent: who }
    },
  },
  {
    name: 'echo',
    description: 'Returns the text it is given.',
    input: { text: z.string().describe('Text to return') },
    run: (args) => ({ content: [{ type: 'text', text: String(args.text) }] }),
  },
  {
    name: 'fail',
    description: 'Always fails, as a tool error (isError).',
    input: {},
    run: () => ({ content: [{ type: 'text', text: 'this tool always fails' }], isError: true }),
  },
]

/** `slow`: answers after `ms` milliseconds (default 1000), for requests still in flight (shutdown, timeouts). */
export const SLOW_TOOL: ToolSpec = {
  name: 'slow',
  description: 'Answers after ms milliseconds.',
  input: { ms: z.number().int().min(0).max(60_000).optional().describe('How long to take; default 1000') },
  run: async (args) => {
    const ms = typeof args.ms === 'number' ? args.ms : 1000
    await new Promise((resolve) => setTimeout(resolve, ms))
    return { content: [{ type: 'text', text: `slept ${ms} ms` }] }
  },
}

export function fillerTool(name: string): ToolSpec {
  return {
    name,
    description: `Filler tool ${name}.`,
    input: {},
    run: () => ({ content: [{ type: 'text', text: name }] }),
  }
}

export function registerTool(mcp: McpServer, spec: ToolSpec) {
  mcp.registerTool(
    spec.name,
    { description: spec.description, inputSchema: spec.input, outputSchema: spec.output },
    (args, extra) => spec.run(args as Record<string, unknown>, extra.authInfo),
  )
}

export function listTools(tools: ToolSpec[], cursor: string | undefined, pageSize: number | undefined) {
  const start = cursor === undefined ? 0 : decodeCursor(cursor)
  const end = pageSize ? start + pageSize : tools.length
  const page = tools.slice(start, end).map((spec): Tool => ({
    name: spec.name,
    description: spec.description,
    inputSchema: toJsonSchema(spec.input),
    ...(spec.output ? { outputSchema: toJsonSchema(spec.output) } : {}),
  }))
  return end < tools.length ? { tools: page, nextCursor: encodeCursor(end) } : { tools: page }
}

function encodeCursor(offset: number): string {
  return Buffer.from(`offset:${offset}`).toString('base64url')
}

function decodeCursor(cursor: string): number {
  const match = /^offset:(\d+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'))
  if (!match) throw new McpError(ErrorCode.InvalidParams, 'Invalid cursor')
  return Number(match[1])
}

function toJsonSchema(shape: z.ZodRawShape): Tool['inputSchema'] {
  const { $schema: _, ...schema } = z.toJSONSchema(z.object(shape), { io: 'input' })
  return schema as Tool['inputSchema']
}
