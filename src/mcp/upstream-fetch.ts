import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js'

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>

/** The upstream answered 401 or 403: the challenge says why (RFC 6750 §3, MCP "Scope Challenge Handling"). */
export class UpstreamAuthError extends Error {
  readonly status: 401 | 403
  readonly challenge: { resourceMetadataUrl?: URL | undefined; scope?: string | undefined; error?: string | undefined }

  constructor(status: 401 | 403, challenge: UpstreamAuthError['challenge']) {
    super(`the MCP server answered HTTP ${status}${challenge.error ? ` (${challenge.error})` : ''}`)
    this.name = 'UpstreamAuthError'
    this.status = status
    this.challenge = challenge
  }
}

/** A response body larger than the relay accepts from an upstream (DESIGN.md §6). */
export class UpstreamTooLargeError extends Error {
  constructor(limit: number) {
    super(`the MCP server's response is larger than ${Math.round(limit / 1024 / 1024)} MiB`)
    this.name = 'UpstreamTooLargeError'
  }
}

/**
 * The fetch a pooled SDK transport uses: it sends the session's current access token (read at
 * each request, so a refresh reaches a live session without a reconnect — FIELD-NOTES), turns a
 * 401/403 into UpstreamAuthError carrying the challenge, and bounds the response size.
 */
export function createUpstreamFetch(deps: {
  accessToken: () => string | undefined
  maxResponseBytes: number
  fetch?: FetchLike
}): FetchLike {
  const baseFetch = deps.fetch ?? fetch
  return async (input, init) => {
    const headers = new Headers(init?.headers)
    const token = deps.accessToken()
    if (token) headers.set('authorization', `Bearer ${token}`)
    const response = await baseFetch(input, { ...init, headers })
    if (response.status === 401 || response.status === 403) {
      const challenge = extractWWWAuthenticateParams(response)
      await response.body?.cancel()
      throw new UpstreamAuthError(response.status, challenge)
    }
    // Responses to POSTed messages are bounded; a GET opens a long-lived event stream whose total
    // size grows with the session, so it is left to the SDK's per-message parsing.
    return init?.method === 'POST' ? limitBody(response, deps.maxResponseBytes) : response
  }
}

function limitBody(response: Response, maxBytes: number): Response {
  if (!response.body) return response
  const declared = Number(response.headers.get('content-length'))
  if (declared > maxBytes) {
    void response.body.cancel()
    throw new UpstreamTooLargeError(maxBytes)
  }
  let seen = 0
  const counted = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength
        if (seen > maxBytes) controller.error(new UpstreamTooLargeError(maxBytes))
        else controller.enqueue(chunk)
      },
    }),
  )
  return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers })
}
