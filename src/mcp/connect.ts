import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ErrorCode, ToolListChangedNotificationSchema, type JSONRPCRequest } from '@modelcontextprotocol/sdk/types.js'
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv'
import type { JsonSchemaType, JsonSchemaValidator, jsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js'
import { answerCutShortStreams } from './cut-short-streams.ts'
import { UpstreamAuthError, type FetchLike } from './upstream-fetch.ts'

export const RELAY_CLIENT_INFO = { name: 'mcp-auth-relay', version: '1.0.0' } as const

/** How long ending a session may take before the transport is closed anyway. */
const TERMINATE_TIMEOUT_MS = 2000

/** Distinct tool output schemas kept compiled before the shared validator starts afresh. */
const MAX_COMPILED_SCHEMAS = 1000

/**
 * One JSON Schema validator (for tools' outputSchema) shared by every pooled Client. Left to
 * itself the SDK builds an Ajv instance per Client: about 17 KB of heap and 0.1–0.2 ms of CPU
 * per session (docs/benchmarks.md). Validators are shared by schema text; Ajv keeps every schema
 * it compiles, so the instance is replaced after MAX_COMPILED_SCHEMAS of them.
 */
export function createSharedSchemaValidator(): jsonSchemaValidator {
  let ajv = new AjvJsonSchemaValidator()
  const compiled = new Map<string, JsonSchemaValidator<unknown>>()
  return {
    getValidator<T>(schema: JsonSchemaType): JsonSchemaValidator<T> {
      const key = JSON.stringify(schema)
      let validator = compiled.get(key)
      if (!validator) {
        if (compiled.size >= MAX_COMPILED_SCHEMAS) {
          compiled.clear()
          ajv = new AjvJsonSchemaValidator()
        }
        validator = ajv.getValidator(schema)
        compiled.set(key, validator)
      }
      return validator as JsonSchemaValidator<T>
    },
  }
}

const sharedSchemaValidator = createSharedSchemaValidator()

/**
 * Connects an SDK Client to an MCP server: Streamable HTTP first; when the server refuses it
 * with a 4xx that is not about auth, the legacy HTTP+SSE transport, as the SDK documents for
 * backwards compatibility (MCP 2025-03-26 "Backwards Compatibility").
 */
export async function connectUpstream(options: {
  url: string
  fetch: FetchLike
  timeoutMs: number
  onToolsChanged: () => void
  onClose: () => void
}): Promise<Client> {
  const url = new URL(options.url)
  const streamable = newClient(options)
  try {
    const transport = new StreamableHTTPClientTransport(url, { fetch: answerCutShortStreams(options.fetch) })
    await streamable.connect(transport, { timeout: options.timeoutMs })
    streamable.onclose = options.onClose
    return streamable
  } catch (error) {
    await streamable.close().catch(() => undefined) // the failed transport holds nothing worth reporting
    if (!(error instanceof StreamableHTTPError) || error.code === undefined || error.code < 400 || error.code >= 500) throw error
  }
  const legacy = newClient(options)
  // The SSE transport's EventSource turns whatever its fetch throws into an SseError without a
  // status, so a 401/403 on the stream itself (a server that checks the token on GET only) would
  // read as a broken server: keep the UpstreamAuthError, so the caller asks for a sign-in.
  let refused: UpstreamAuthError | undefined
  const fetchKeepingRefusal: FetchLike = async (input, init) => {
    let response: Response
    try {
      response = await options.fetch(input, init)
    } catch (error) {
      if (error instanceof UpstreamAuthError) refused = error
      throw error
    }
    // MCP 2024-11-05 HTTP+SSE: a server that forgot the session (it restarted) answers the
    // messages POSTed to it 404. The SDK reports that as an untyped Error, so it is typed here:
    // the pool retires the session and the caller reopens it, as for Streamable HTTP.
    if (init?.method === 'POST' && response.status === 404) {
      await response.body?.cancel()
      throw new LegacySessionLostError()
    }
    return response
  }
  try {
    await legacy.connect(new SSEClientTransport(url, { fetch: fetchKeepingRefusal }), { timeout: options.timeoutMs })
  } catch (error) {
    // A failed EventSource keeps reconnecting on its own until it is closed.
    await legacy.close().catch(() => undefined) // nothing was opened that is worth reporting
    throw refused ?? error
  }
  legacy.onclose = options.onClose
  return legacy
}

function newClient(options: { onToolsChanged: () => void }): Client {
  const client = new Client(RELAY_CLIENT_INFO, { capabilities: {}, jsonSchemaValidator: sharedSchemaValidator })
  // MCP "Tools / List Changed Notification": the cached list for this server is stale.
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => options.onToolsChanged())
  // The SDK refuses setRequestHandler for sampling/createMessage and elicitation/create unless
  // the client declares those capabilities, which the relay must not (it has neither). The
  // public fallbackRequestHandler sees every request no handler is registered for, so a server
  // that asks anyway hears why at once, instead of a bare "Method not found".
  client.fallbackRequestHandler = async (request) => refuseServerRequest(request)
  return client
}

/**
 * MCP 2025-11-25 "Sampling, Error Handling" names -1 for a sampling request the client turns
 * down; the relay uses it for form elicitation too. The server reads the message, so it says why.
 */
const REFUSED = -1
const REFUSALS: Readonly<Record<string, string>> = {
  'sampling/createMessage':
    'The MCP Auth Relay has no language model at hand to sample: it relays tool calls for an agent and cannot answer sampling requests. Complete the tool without sampling.',
  'elicitation/create':
    'The MCP Auth Relay has no user at hand to fill in a form: it relays tool calls for an agent and cannot answer elicitation requests. Complete the tool without asking the user, or fail with a message the agent can pass on.',
}

/**
 * The SDK answers a handler's throw with the error's `code` and `message`; an McpError's message
 * would reach the server prefixed with "MCP error -1: ", so a plain Error carries the code.
 */
class ServerRequestRefused extends Error {
  readonly code: number
  constructor(code: number, message: string) {
    super(message)
    this.code = code
  }
}

function refuseServerRequest(request: Pick<JSONRPCRequest, 'method'>): never {
  const refusal = REFUSALS[request.method]
  // JSON-RPC 2.0 §5.1: anything else the relay does not handle is still "Method not found".
  if (refusal === undefined) throw new ServerRequestRefused(ErrorCode.MethodNotFound, 'Method not found')
  throw new ServerRequestRefused(REFUSED, refusal)
}

/**
 * Ends a pooled session. MCP Streamable HTTP, "Session Management": a client that no longer needs
 * a session SHOULD send DELETE, or the server keeps it (and its state) until its own expiry;
 * closing the transport alone only aborts the GET stream. `terminate: false` for a session the
 * server already forgot. The DELETE is bounded: a server that does not answer does not hold up
 * eviction or shutdown (closing the transport aborts it).
 */
export async function closeUpstream(client: Client, options: { terminate: boolean }): Promise<void> {
  const transport = client.transport
  try {
    if (options.terminate && transport instanceof StreamableHTTPClientTransport) {
      await withDeadline(transport.terminateSession(), TERMINATE_TIMEOUT_MS)
    }
  } finally {
    await client.close()
  }
}

/** A legacy HTTP+SSE server answered 404 to a message for its session: it no longer knows it. */
class LegacySessionLostError extends Error {
  constructor() {
    super('the MCP server no longer knows this session (HTTP 404)')
    this.name = 'LegacySessionLostError'
  }
}

/** MCP Streamable HTTP, "Session Management": HTTP 404 to a request with a session id means the server forgot the session. */
export function isSessionLost(error: unknown): boolean {
  return (error instanceof StreamableHTTPError && error.code === 404) || error instanceof LegacySessionLostError
}

/** Settles as `work` does, or resolves after `ms`, whichever comes first. */
function withDeadline(work: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    work.then(resolve, reject).finally(() => clearTimeout(timer))
  })
}
