// A real MCP server (SDK McpServer, Streamable HTTP, stateful sessions, open: no auth) whose
// tools answer in every way the relay must pass on: a URL elicitation error (-32042), sampling
// and form-elicitation requests sent back to the client mid-call, binary content (image, audio,
// embedded blob resource) of any size, task-only tools (MCP 2025-11-25 tasks, one that finishes
// and one that never does), and a tool with a title, annotations and an output schema.
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { InMemoryTaskMessageQueue, InMemoryTaskStore } from '@modelcontextprotocol/sdk/experimental/tasks'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  UrlElicitationRequiredError,
  type CallToolResult,
  type GetTaskResult,
} from '@modelcontextprotocol/sdk/types.js'
import * as z from 'zod'
import { readBody } from './read-body.ts'

export interface AnsweringServer {
  /** http://127.0.0.1:PORT/mcp */
  url: string
  /** JSON-RPC requests received, by method (e.g. 'tasks/cancel'). */
  methods: Map<string, number>
  /** What the client answered to the server's own requests during `ask-around` calls. */
  answersHeard: string[]
  close(): Promise<void>
}

/** The bytes `binary` returns for a size: deterministic, so a test can compare what it fetched. */
export function binaryBytes(size: number): Buffer {
  const bytes = Buffer.alloc(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) % 256
  return bytes
}

export async function startAnsweringServer(options: { toolsListFails?: boolean } = {}): Promise<AnsweringServer> {
  const methods = new Map<string, number>()
  const answersHeard: string[] = []
  const sessions = new Map<string, { mcp: McpServer; transport: StreamableHTTPServerTransport; tasks: InMemoryTaskStore }>()

  function createSessionServer(tasks: InMemoryTaskStore): McpServer {
    const mcp = new McpServer(
      { name: 'answering-peer', version: '1.0.0' },
      {
        capabilities: { tools: {}, tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
        taskStore: tasks,
        taskMessageQueue: new InMemoryTaskMessageQueue(),
      },
    )

    mcp.registerTool(
      'needs-consent',
      { description: 'Answers -32042: the user must open a page first.', inputSchema: { url: z.string() } },
      ({ url }) => {
        throw new UrlElicitationRequiredError(
          [{ mode: 'url', url, message: 'Approve access to your calendar on the consent page.', elicitationId: randomUUID() }],
          'Consent is needed before this tool can run.',
        )
      },
    )

    mcp.registerTool('ask-around', { description: 'Asks the client to sample and to elicit, and says what it got back.', inputSchema: {} }, async (_args, extra) => {
      const heard: string[] = []
      const ask = async (what: string, send: () => Promise<unknown>) => {
        try {
          heard.push(`${what}: answered ${JSON.stringify(await send())}`)
        } catch (error) {
          heard.push(error instanceof McpError ? `${what}: refused, code ${error.code}, "${error.message}"` : `${what}: failed, ${String(error)}`)
        }
      }
      await ask('sampling', () =>
        extra.sendRequest(
          { method: 'sampling/createMessage', params: { messages: [{ role: 'user', content: { type: 'text', text: 'Summarise this.' } }], maxTokens: 50 } },
          CreateMessageResultSchema,
          { timeout: 10_000 },
        ),
      )
      await ask('elicitation', () =>
        extra.sendRequest(
          { method: 'elicitation/create', params: { mode: 'form', message: 'Which account?', requestedSchema: { type: 'object', properties: { account: { type: 'string' } } } } },
          ElicitResultSchema,
          { timeout: 10_000 },
        ),
      )
      answersHeard.push(...heard)
      return { content: [{ type: 'text', text: heard.join('\n') }] }
    })

    mcp.registerTool(
      'binary',
      {
        description: 'Returns one image, audio or blob-resource item of the given size and type.',
        inputSchema: { kind: z.enum(['image', 'audio', 'resource']), size: z.number().int().min(0), mimeType: z.string() },
      },
      ({ kind, size, mimeType }): CallToolResult => {
        const data = binaryBytes(size).toString('base64')
        const item =
          kind === 'resource'
            ? { type: 'resource' as const, resource: { uri: 'file:///report.bin', mimeType, blob: data } }
            : { type: kind, data, mimeType }
        return { content: [{ type: 'text', text: `here is the ${kind}` }, item] }
      },
    )

    mcp.registerTool(
      'described',
      {
        title: 'Described Tool',
        description: 'Carries a title, annotations and an output schema.',
        inputSchema: {},
        outputSchema: { answer: z.number() },
        annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      },
      () => ({ content: [{ type: 'text', text: '{"answer":42}' }], structuredContent: { answer: 42 } }),
    )

    // MCP 2025-11-25 tasks: both tools refuse a plain call (-32601) and are polled until done.
    mcp.experimental.tasks.registerToolTask(
      'slow-report',
      { description: 'A task-only tool that finishes after ms milliseconds.', inputSchema: { ms: z.number().int().min(0) }, execution: { taskSupport: 'required' } },
      {
        createTask: async ({ ms }, extra) => {
          const task = await extra.taskStore.createTask({ ttl: 60_000, pollInterval: 20 })
          setTimeout(() => {
            extra.taskStore
              .storeTaskResult(task.taskId, 'completed', { content: [{ type: 'text', text: `report ready after ${ms} ms` }] })
              .catch((error: unknown) => console.error('answering peer: storing a task result failed', error))
          }, ms)
          return { task }
        },
        getTask: async (_args, extra) => (await extra.taskStore.getTask(extra.taskId)) as GetTaskResult,
        getTaskResult: async (_args, extra) => (await extra.taskStore.getTaskResult(extra.taskId)) as CallToolResult,
      },
    )
    mcp.experimental.tasks.registerToolTask(
      'never-done',
      { description: 'A task-only tool that never finishes.', inputSchema: { note: z.string().optional() }, execution: { taskSupport: 'required' } },
      {
        createTask: async (_args, extra) => ({ task: await extra.taskStore.createTask({ ttl: 60_000, pollInterval: 20 }) }),
        getTask: async (_args, extra) => (await extra.taskStore.getTask(extra.taskId)) as GetTaskResult,
        getTaskResult: async (_args, extra) => (await extra.taskStore.getTaskResult(extra.taskId)) as CallToolResult,
      },
    )
    if (options.toolsListFails) {
      mcp.server.setRequestHandler(ListToolsRequestSchema, () => {
        throw new McpError(ErrorCode.InternalError, 'tools/list is broken here')
      })
    }
    return mcp
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (new URL(req.url ?? '/', 'http://peer').pathname !== '/mcp') {
      res.writeHead(404).end()
      return
    }
    const body: unknown = req.method === 'POST' ? JSON.parse(await readBody(req)) : undefined
    for (const message of Array.isArray(body) ? body : [body]) {
      const method = (message as { method?: unknown } | undefined)?.method
      if (typeof method === 'string') methods.set(method, (methods.get(method) ?? 0) + 1)
    }
    const sessionId = req.headers['mcp-session-id']
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId)
      if (!session) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }))
        return
      }
      await session.transport.handleRequest(req, res, body)
      return
    }
    const tasks = new InMemoryTaskStore()
    const mcp = createSessionServer(tasks)
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { mcp, transport, tasks })
      },
    })
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId)
      tasks.cleanup()
    }
    await mcp.connect(transport)
    await transport.handleRequest(req, res, body)
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) res.destroy()
      else res.writeHead(500, { 'content-type': 'text/plain' }).end(`answering peer: ${String(error)}`)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`
  return {
    url,
    methods,
    answersHeard,
    async close() {
      const open = [...sessions.values()]
      sessions.clear()
      for (const session of open) session.tasks.cleanup()
      await Promise.allSettled(open.map((session) => session.mcp.close()))
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      })
    },
  }
}
