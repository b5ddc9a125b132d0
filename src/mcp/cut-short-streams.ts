import type { FetchLike } from './upstream-fetch.ts'

type RequestId = string | number

/** JSON-RPC 2.0 §5.1 server error range; -32000 is what MCP SDKs use for a closed connection. */
const CONNECTION_CLOSED = -32000

/**
 * MCP Streamable HTTP answers a POSTed request with JSON or with an event stream that carries
 * the response. When that stream ends or breaks before the response (the server crashed mid-
 * answer, a proxy cut it, the response went over the size bound), the SDK only reports it to
 * `onerror` and the call waits out its whole timeout (UPSTREAM_TIMEOUT_SECONDS, 50 s by default)
 * to answer TIMEOUT. This fetch closes such a stream with a JSON-RPC error response for each
 * request still unanswered, so the call fails at once saying what happened.
 *
 * A stream that carried an event id is left alone: the server may close it on purpose and the
 * SDK resumes it with a GET and Last-Event-ID (MCP "Resumability and Redelivery").
 */
export function answerCutShortStreams(fetch: FetchLike): FetchLike {
  return async (input, init) => {
    const response = await fetch(input, init)
    if (init?.method !== 'POST' || !response.ok || !response.body) return response
    if (!response.headers.get('content-type')?.includes('text/event-stream')) return response
    const ids = requestIds(init.body)
    if (ids.length === 0) return response
    return new Response(guardStream(response.body, ids), { status: response.status, statusText: response.statusText, headers: response.headers })
  }
}

/** The ids of the JSON-RPC requests in a POSTed body (notifications and responses have none to wait for). */
function requestIds(body: unknown): RequestId[] {
  if (typeof body !== 'string') return []
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return [] // not JSON-RPC: nothing of ours to answer
  }
  return (Array.isArray(parsed) ? parsed : [parsed]).flatMap((message) => {
    const { id, method } = (message ?? {}) as { id?: unknown; method?: unknown }
    return typeof method === 'string' && (typeof id === 'string' || typeof id === 'number') ? [id] : []
  })
}

function guardStream(body: ReadableStream<Uint8Array>, ids: RequestId[]): ReadableStream<Uint8Array> {
  // Keyed by JSON text, so that the ids 1 and "1" stay apart.
  const pending = new Map(ids.map((id) => [JSON.stringify(id), id]))
  const reader = body.getReader()
  const decoder = new TextDecoder()
  // The unfinished last line, in pieces: joining on every chunk would copy a long line over and over.
  let partialLine: string[] = []
  let eventType = ''
  let data: string[] = []
  let resumable = false

  // The SSE format (WHATWG HTML, "Server-sent events"): field lines, an empty line ends an event.
  function readLines(text: string): void {
    // A CR at the very end may be the first half of a CRLF: it waits for the next chunk.
    if (!/[\r\n]/.test(text.endsWith('\r') ? text.slice(0, -1) : text)) {
      partialLine.push(text)
      return
    }
    const lines = (partialLine.join('') + text).split(/\r\n|\r(?!$)|\n/)
    partialLine = [lines.pop() ?? '']
    for (const line of lines) {
      if (line === '') {
        if (data.length > 0 && (eventType === '' || eventType === 'message')) noteAnswers(data.join('\n'))
        eventType = ''
        data = []
        continue
      }
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'data') data.push(value)
      else if (field === 'event') eventType = value
      else if (field === 'id') resumable = true
    }
  }

  function noteAnswers(payload: string): void {
    let parsed: unknown
    try {
      parsed = JSON.parse(payload)
    } catch {
      return // the SDK reports an event it cannot read; it answers nothing of ours
    }
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
      const { id, result, error } = (message ?? {}) as { id?: unknown; result?: unknown; error?: unknown }
      if (result !== undefined || error !== undefined) pending.delete(JSON.stringify(id))
    }
  }

  function finish(controller: ReadableStreamDefaultController<Uint8Array>, problem: string): void {
    if (pending.size > 0 && !resumable) {
      // A blank line first ends whatever partial event the server left behind.
      const events = [...pending.values()].map(
        (id) => `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, error: { code: CONNECTION_CLOSED, message: problem } })}\n\n`,
      )
      controller.enqueue(new TextEncoder().encode(`\n\n${events.join('')}`))
    }
    controller.close()
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: Awaited<ReturnType<typeof reader.read>>
      try {
        chunk = await reader.read()
      } catch (error) {
        const detail = error instanceof Error ? `: ${error.message}` : ''
        finish(controller, `the MCP server's event stream broke before it answered${detail}`)
        return
      }
      if (chunk.done) {
        finish(controller, "the MCP server's event stream ended before it answered")
        return
      }
      // Once every request is answered (or the stream is resumable) the rest passes unread.
      if (pending.size > 0 && !resumable) readLines(decoder.decode(chunk.value, { stream: true }))
      controller.enqueue(chunk.value)
    },
    cancel(reason) {
      return reader.cancel(reason)
    },
  })
}
