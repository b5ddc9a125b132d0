import type { JSONRPCMessage, StreamableHTTPClientTransport, Transport } from '@modelcontextprotocol/client'

/**
 * SEP-2322 (MCP 2026-07-28, "Multi Round-Trip Requests"): a result without `resultType` is a
 * complete result. The SDK's client (2.4.0) refuses such a result from a 2026-07-28 server
 * ("missing required resultType"), so a server that leaves the field out, as the revision allows,
 * would fail every call. The transport's incoming results are read as the revision says before
 * the SDK sees them: the message object is the transport's own, marked in place, nothing is
 * parsed again.
 */
export function completeResults(transport: StreamableHTTPClientTransport): StreamableHTTPClientTransport {
  // Protocol.connect() assigns `onmessage`, an own field of the transport: intercept that assignment.
  let deliver: Transport['onmessage']
  Object.defineProperty(transport, 'onmessage', {
    configurable: true,
    get: () => deliver && receive,
    set: (handler: Transport['onmessage']) => {
      deliver = handler
    },
  })
  const receive: NonNullable<Transport['onmessage']> = (message, extra) => {
    markComplete(message)
    deliver?.(message, extra)
  }
  return transport
}

function markComplete(message: JSONRPCMessage): void {
  const result = (message as { result?: unknown }).result
  if (typeof result === 'object' && result !== null && !Array.isArray(result) && !('resultType' in result)) {
    ;(result as Record<string, unknown>).resultType = 'complete'
  }
}
