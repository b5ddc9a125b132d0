import type { IncomingMessage } from 'node:http'

// Peers read small bodies only (forms, token requests, JSON-RPC); anything larger is a test bug.
const MAX_BODY_BYTES = 1024 * 1024

/** Reads a request body as UTF-8 text, refusing more than 1 MiB. */
export async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    size += buffer.length
    if (size > MAX_BODY_BYTES) throw new Error(`request body over ${MAX_BODY_BYTES} bytes`)
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}
