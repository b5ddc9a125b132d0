import { randomInt } from 'node:crypto'
import {
  Client,
  ProtocolErrorCode,
  SdkHttpError,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type DiscoverResult,
  type JSONRPCRequest,
} from '@modelcontextprotocol/client'
import { answerCutShortStreams } from './cut-short-streams.ts'
import { completeResults } from './complete-results.ts'
import { UpstreamAuthError, type FetchLike } from './upstream-fetch.ts'

export const RELAY_CLIENT_INFO = { name: 'mcp-auth-relay', version: '2.0.0' } as const

/** How long ending a session may take before the transport is closed anyway. */
const TERMINATE_TIMEOUT_MS = 2000

/**
 * Pages one tools/list may take (MCP "Pagination"); the SDK walks them. Past it the list is an
 * error: a server whose cursor never ends is broken. Each page is bounded in size by the fetch.
 */
const MAX_LIST_PAGES = 100

/** The MCP revision a server speaks: `legacy` (2025-11-25 and older, sessions) or `modern` (2026-07-28, stateless). */
export type Era = 'legacy' | 'modern'

/**
 * How to connect (DESIGN.md §5, "Protocol revisions"):
 * - `legacy`: the 2025 `initialize` handshake, Streamable HTTP first, then the legacy HTTP+SSE transport;
 * - `modern`: a 2026-07-28 server whose `server/discover` result the relay already holds: no round trip;
 * - `negotiate`: the SDK asks the server (`server/discover`, falling back to `initialize` when the
 *   server does not speak 2026-07-28), or with `pin` insists on that revision.
 */
export type ConnectMode = { kind: 'legacy' } | { kind: 'modern'; discover: DiscoverResult } | { kind: 'negotiate'; pin?: string }

/**
 * What the relay declares to 2026-07-28 servers in every request's `_meta` (DESIGN.md §4): the
 * user answers forms and opens pages through the chat, so elicitation in both modes; never
 * sampling or roots. A 2025-era session declares nothing: those servers would send their
 * questions as requests of their own, with no user at hand to answer them.
 */
const MODERN_CAPABILITIES = { elicitation: { form: {}, url: {} } }

/**
 * Connects an SDK Client (`@modelcontextprotocol/client` 2.x) to an MCP server. A session that
 * turns out to speak 2025-11-25 or older over Streamable HTTP refused with a 4xx that is not
 * about auth is tried over the legacy HTTP+SSE transport, as the SDK documents for backwards
 * compatibility (MCP 2025-03-26 "Backwards Compatibility"). The caller reads the outcome from
 * `client.getProtocolEra()` and `client.getDiscoverResult()`.
 */
export async function connectUpstream(options: {
  url: string
  fetch: FetchLike
  timeoutMs: number
  mode: ConnectMode
  onToolsChanged: () => void
  onClose: () => void
}): Promise<Client> {
  const url = new URL(options.url)
  const { mode } = options
  const client = newClient(options, mode)
  const transport =
    mode.kind === 'legacy'
      ? new StreamableHTTPClientTransport(url, { fetch: answerCutShortStreams(options.fetch) })
      : completeResults(new StreamableHTTPClientTransport(url, { fetch: answerCutShortStreams(options.fetch) }))
  try {
    await client.connect(transport, {
      timeout: options.timeoutMs,
      ...(mode.kind === 'modern' ? { prior: { kind: 'modern', discover: mode.discover } } : {}),
    })
    client.onclose = options.onClose
    if (client.getProtocolEra() === 'modern') startIdsAtRandom(client)
    return client
  } catch (error) {
    await client.close().catch(() => undefined) // the failed transport holds nothing worth reporting
    if (mode.kind === 'modern' || (mode.kind === 'negotiate' && mode.pin) || !isRefusedOverStreamableHttp(error) || refusesRevision(error)) throw error
  }
  return connectLegacySse(url, options)
}

async function connectLegacySse(url: URL, options: Parameters<typeof connectUpstream>[0]): Promise<Client> {
  const legacy = newClient(options, { kind: 'legacy' })
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

/**
 * SEP-2322 (MCP 2026-07-28, "Multi Round-Trip Requests"): a retry's JSON-RPC id MUST differ from
 * its first request's. The retry may go out from another replica, or from this one after a
 * restart, whose client counts its ids from 0 too: each 2026-07-28 client counts from a random
 * point instead (the SDK's counter is private; it is the one place the relay reaches into it).
 */
function startIdsAtRandom(client: Client): void {
  ;(client as unknown as { _requestMessageId: number })._requestMessageId = randomInt(2 ** 47)
}

/** A Streamable HTTP connect refused with a 4xx other than auth: the server may speak only the legacy HTTP+SSE transport. */
function isRefusedOverStreamableHttp(error: unknown): boolean {
  return error instanceof SdkHttpError && error.status >= 400 && error.status < 500
}

function newClient(options: { onToolsChanged: () => void }, mode: ConnectMode): Client {
  const client = new Client(RELAY_CLIENT_INFO, {
    // A negotiating client that falls back to `initialize` is a 2025-era session: it declares nothing.
    capabilities: mode.kind === 'modern' ? MODERN_CAPABILITIES : {},
    listMaxPages: MAX_LIST_PAGES,
    // SEP-2322: questions a 2026-07-28 server asks (`input_required` results) go to the user
    // through the chat (relay/call-tool.ts), never to handlers of the relay's own.
    inputRequired: { autoFulfill: false },
    ...(mode.kind === 'negotiate' ? { versionNegotiation: { mode: mode.pin ? { pin: mode.pin } : 'auto' } } : {}),
  })
  // MCP "Tools / List Changed Notification": the cached list for this server is stale.
  client.setNotificationHandler('notifications/tools/list_changed', () => options.onToolsChanged())
  // The SDK refuses setRequestHandler for sampling/createMessage and elicitation/create unless
  // the client declares those capabilities, which a 2025-era session must not (the relay has
  // neither a model nor a user at hand there). The public fallbackRequestHandler sees every
  // request no handler is registered for, so a server that asks anyway hears why at once,
  // instead of a bare "Method not found".
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

/** The SDK answers a handler's throw with the error's `code` and `message`. */
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
  if (refusal === undefined) throw new ServerRequestRefused(ProtocolErrorCode.MethodNotFound, 'Method not found')
  throw new ServerRequestRefused(REFUSED, refusal)
}

/**
 * Ends a pooled session. MCP Streamable HTTP, "Session Management": a client that no longer needs
 * a session SHOULD send DELETE, or the server keeps it (and its state) until its own expiry;
 * closing the transport alone only aborts the GET stream. `terminate: false` for a session the
 * server already forgot. The DELETE is bounded: a server that does not answer does not hold up
 * eviction or shutdown (closing the transport aborts it). A 2026-07-28 client has no session.
 */
export async function closeUpstream(client: Client, options: { terminate: boolean }): Promise<void> {
  const transport = client.transport
  try {
    if (options.terminate && transport instanceof StreamableHTTPClientTransport && transport.sessionId !== undefined) {
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
  return (error instanceof SdkHttpError && error.status === 404) || error instanceof LegacySessionLostError
}

/**
 * The server no longer answers in the era the relay took it for (DESIGN.md §5: the verdict is
 * refreshed then): a 2026-07-28 request refused as an unsupported revision (-32022) or with HTTP
 * 400 (a 2025-era server asking for a session), or a 2025 handshake refused with HTTP 400/405
 * (a server that now speaks only 2026-07-28).
 */
export function isEraRefused(error: unknown): boolean {
  if (error instanceof SdkHttpError) return error.status === 400 || error.status === 405
  return refusesRevision(error)
}

/** MCP 2026-07-28 "Versioning": -32022, the revision is not one the server speaks; as a JSON-RPC error, or in an HTTP 400's body. */
function refusesRevision(error: unknown): boolean {
  if ((error as { code?: unknown } | undefined)?.code === ProtocolErrorCode.UnsupportedProtocolVersion) return true
  if (!(error instanceof SdkHttpError) || error.status !== 400) return false
  const text = (error.data as { text?: unknown }).text
  try {
    return typeof text === 'string' && (JSON.parse(text) as { error?: { code?: unknown } }).error?.code === ProtocolErrorCode.UnsupportedProtocolVersion
  } catch {
    return false // not JSON: an old server's own 400 page
  }
}

/** Settles as `work` does, or resolves after `ms`, whichever comes first. */
function withDeadline(work: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    work.then(resolve, reject).finally(() => clearTimeout(timer))
  })
}
