import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import { RelayError } from '../../errors.ts'
import type { RelayService } from '../../relay/types.ts'
import { rateLimitKey } from '../client-address.ts'

export interface FileRoutesOptions {
  relay: RelayService
  /** Requests per client address (an IPv6 one per /64) per window on /files/:id. */
  rateLimit: { max: number; timeWindowMs: number }
}

/** RFC 9110 §8.3.1: type "/" subtype, each a token; parameters are dropped (see below). */
const MEDIA_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/

/**
 * Types a browser renders on its own without running anything: these may be shown inline (a
 * Markdown image in the chat). Everything else is a download, SVG and HTML above all (both can
 * carry script).
 */
const INLINE_TYPES: ReadonlySet<string> = new Set([
  'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif',
  'audio/mpeg', 'audio/ogg', 'audio/wav', 'audio/webm',
])

/**
 * GET /files/:id (DESIGN.md §4): binary tool content the relay kept aside, for whoever holds the
 * link (the id is the capability; no API key). The bytes are the upstream server's, so they are
 * served as inert as possible: their own type or octet-stream, never sniffed, a sandboxing CSP,
 * and a download unless they are an image or audio type that is safe inline.
 */
export async function fileRoutes(fastify: FastifyInstance, options: FileRoutesOptions): Promise<void> {
  const { relay } = options
  await fastify.register(rateLimit, {
    global: false,
    // Per client (TRUST_PROXY), an IPv6 client per /64 (client-address.ts).
    keyGenerator: (request) => rateLimitKey(request.ip),
    errorResponseBuilder: (_request, context) =>
      new RelayError('RATE_LIMITED', `There were too many file requests from this address; try again in ${context.after}.`),
  })
  const limited = { rateLimit: { max: options.rateLimit.max, timeWindow: options.rateLimit.timeWindowMs } }

  fastify.get<{ Params: { id: string } }>('/files/:id', { config: limited }, async (request, reply) => {
    const file = await relay.readFile(request.params.id)
    if (!file) throw new RelayError('NOT_FOUND', 'This file link has expired (links last 10 minutes) or never existed; call the tool again for a new one.')
    const type = servedType(file.mimeType)
    return reply
      .headers({
        'content-type': type,
        'content-disposition': INLINE_TYPES.has(type) ? 'inline' : 'attachment',
        'x-content-type-options': 'nosniff',
        'content-security-policy': "default-src 'none'; sandbox",
        'cache-control': 'no-store',
        // The link is a capability: a page it leads to must not learn it.
        'referrer-policy': 'no-referrer',
      })
      .send(file.bytes)
  })
}

/**
 * The item's mimeType when it is a plain type/subtype, else application/octet-stream.
 * Parameters are dropped: the bytes are served as they are, so a charset adds nothing, and a
 * header value built from the server's text stays a bare token.
 */
function servedType(mimeType: string): string {
  const essence = mimeType.split(';', 1)[0]!.trim().toLowerCase()
  return MEDIA_TYPE.test(essence) ? essence : 'application/octet-stream'
}
