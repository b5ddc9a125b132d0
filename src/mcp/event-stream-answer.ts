import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'

/** Event streams longer than this are passed on as they arrive, never held whole. */
const WHOLE_ANSWER_MAX_BYTES = 256 * 1024

/** What a POSTed message's event-stream answer is passed on as: the equivalent JSON, or the stream itself. */
export type EventStreamAnswer = { kind: 'json'; text: string } | { kind: 'stream'; body: ReadableStream<Uint8Array> }

/**
 * MCP Streamable HTTP, "Sending Messages to the Server": the server answers a POSTed request
 * with `application/json` or with an event stream carrying the response (and, before it, any
 * notifications and requests of its own). Most servers (the SDK's by default) send a stream of
 * one `message` event, the response, and close it. The SDK client reads a stream through web
 * streams, a TextDecoderStream and an event parser (its flush alone builds an Error with a stack
 * on every answer): about a fifth of the relay's CPU on a warm call (docs/benchmarks.md). Read
 * here, on the node:http stream, such an answer becomes the JSON the server could have sent:
 * the same messages, which the SDK hands to the same handlers.
 *
 * Anything else streams as it arrived, from its first byte: an event that is not a JSON-RPC
 * response (a notification, a server request awaiting the relay's answer), an event id or retry
 * field (MCP "Resumability and Redelivery": the SDK resumes such a stream), a stream that ends
 * before it answered, breaks, or grows past WHOLE_ANSWER_MAX_BYTES.
 */
export function readEventStreamAnswer(res: IncomingMessage): Promise<EventStreamAnswer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let bytes = 0
    const decoder = new StringDecoder('utf8')
    let unread = ''
    let eventType = ''
    let data: string[] = []
    const messages: string[] = []

    // The SSE format (WHATWG HTML, "Server-sent events"): field lines; an empty line ends an
    // event. False when the stream is not a plain answer.
    function readLine(line: string): boolean {
      if (line === '') {
        if (data.length === 0) {
          eventType = ''
          return true
        }
        const text = data.join('\n')
        data = []
        if ((eventType !== '' && eventType !== 'message') || !isResponse(text)) return false
        eventType = ''
        messages.push(text)
        return true
      }
      if (line.startsWith(':')) return true // a comment (keep-alive)
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + (line.charCodeAt(colon + 1) === 0x20 ? 2 : 1))
      if (field === 'data') data.push(value)
      else if (field === 'event') eventType = value
      else if (field === 'id' || field === 'retry') return false
      return true
    }

    function readText(text: string): boolean {
      unread += text
      const lineEnd = /\r\n|\r|\n/g
      let start = 0
      for (let match = lineEnd.exec(unread); match !== null; match = lineEnd.exec(unread)) {
        // A CR at the very end may be the first half of a CRLF: it waits for the next chunk.
        if (match[0] === '\r' && match.index === unread.length - 1) break
        if (!readLine(unread.slice(start, match.index))) return false
        start = lineEnd.lastIndex
      }
      unread = unread.slice(start)
      return true
    }

    function onData(chunk: Buffer): void {
      chunks.push(chunk)
      bytes += chunk.byteLength
      if (bytes > WHOLE_ANSWER_MAX_BYTES || !readText(decoder.write(chunk))) passOn()
    }

    function onEnd(): void {
      stopReading()
      const tail = decoder.end()
      const ended = readText(tail) && (unread === '' || (unread === '\r' && readLine(''))) && data.length === 0
      if (ended && messages.length > 0) resolve({ kind: 'json', text: messages.length === 1 ? messages[0]! : `[${messages.join(',')}]` })
      else resolve({ kind: 'stream', body: replay(chunks, undefined) })
    }

    function onError(error: Error): void {
      stopReading()
      resolve({ kind: 'stream', body: replay(chunks, error) })
    }

    function onClose(): void {
      if (!res.complete) onError(new Error('the connection closed before the event stream ended'))
    }

    function stopReading(): void {
      res.off('data', onData)
      res.off('end', onEnd)
      res.off('error', onError)
      res.off('close', onClose)
    }

    /** Not a plain answer: the bytes read so far go back in front of the rest, as one stream. */
    function passOn(): void {
      stopReading()
      res.pause()
      res.unshift(Buffer.concat(chunks))
      resolve({ kind: 'stream', body: Readable.toWeb(res) as ReadableStream<Uint8Array> })
    }

    res.on('data', onData)
    res.on('end', onEnd)
    res.on('error', onError)
    res.on('close', onClose)
  })
}

/** A JSON-RPC 2.0 response (§5): an object with an id and a result or an error, and no method. */
function isResponse(text: string): boolean {
  let message: unknown
  try {
    message = JSON.parse(text)
  } catch {
    return false // the SDK reports what it cannot read: it gets the stream
  }
  if (typeof message !== 'object' || message === null || Array.isArray(message)) return false
  return 'id' in message && ('result' in message || 'error' in message) && !('method' in message)
}

/**
 * A stream of the chunks read, then its end or `error`. Pull-based, so an error reaches the reader
 * only after the chunks that came before it, as it did on the wire.
 */
function replay(chunks: Buffer[], error: Error | undefined): ReadableStream<Uint8Array> {
  let next = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next < chunks.length) controller.enqueue(chunks[next++]!)
      else if (error) controller.error(error)
      else controller.close()
    },
  })
}
