import { extractWWWAuthenticateParams } from '@modelcontextprotocol/client'
import { liveCall, type CallBudget } from './call-context.ts'
import { wholeBodyOf } from './http-fetch.ts'
import { EventStreamShape, feedShape, JsonShape, type ShapeLimits } from './json-shape.ts'

/**
 * What one upstream response (and one event of a session's stream) may hold (DESIGN.md §6), sized
 * so that the relay's own work on the largest answer it accepts stays well under 200 ms of one core
 * on this project's 2-core machines (test/battery/hostile-upstream.test.ts measures it): an image
 * of 1.5 MiB (2 MiB of base64: the SDK's check, sealing it into the store) costs about 50-130 ms
 * there, 2 MiB of text 30-80 ms, one tool schema of 50,000 JSON items about 70 ms. The earlier
 * 16 MiB held the event loop for over a second. Real answers are far smaller: 1,500 tools are
 * about 300 KiB and 30,000 items.
 */
export const MAX_RESPONSE_BYTES = 2 * 1024 * 1024
export const MAX_RESPONSE_SHAPE: ShapeLimits = { maxDepth: 128, maxItems: 50_000 }

const RESPONSE = "the MCP server's response"
const EVENT = 'an event from the MCP server'
const ALL_ANSWERS = 'all of its answers together'

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

/**
 * A response body, or all the answers of one call, larger than the relay accepts from an upstream
 * (DESIGN.md §6), in bytes or in its JSON's shape: `what` (the response, or all answers) and why.
 */
export class UpstreamTooLargeError extends Error {
  constructor(what: string, problem: string) {
    super(`${what} ${problem}`)
    this.name = 'UpstreamTooLargeError'
  }
}

function largerThan(limit: number): string {
  return `is larger than ${Math.round(limit / 1024 / 1024)} MiB`
}

/**
 * The fetch a pooled SDK transport uses: it sends the session's current access token (read at
 * each request, so a refresh reaches a live session without a reconnect — FIELD-NOTES), turns a
 * 401/403 into UpstreamAuthError carrying the challenge, and bounds the response size.
 *
 * A POST gets its own AbortSignal, tied to the session's by a listener removed once its response
 * is read. The SDK hands every request the one signal that lives as long as the session, and
 * Node's fetch adds an abort listener to it per request that goes only when the request is
 * garbage collected: on a pooled session that piles up thousands of listeners (each add scans
 * them all) and keeps finished requests alive until a major GC (measured: docs/benchmarks.md).
 */
export function createUpstreamFetch(deps: {
  accessToken: () => string | undefined
  /**
   * The fetch that presents a token bound to a key itself (DPoP, RFC 9449 §7.1: `Authorization:
   * DPoP` and a proof on every request); undefined for a bearer token.
   */
  presentWith?: (accessToken: string, fetch: FetchLike) => FetchLike | undefined
  maxResponseBytes: number
  fetch?: FetchLike
}): FetchLike {
  const baseFetch = deps.fetch ?? fetch
  return async (input, init) => {
    const headers = new Headers(init?.headers)
    const token = deps.accessToken()
    const presenting = token ? deps.presentWith?.(token, baseFetch) : undefined
    if (token && !presenting) headers.set('authorization', `Bearer ${token}`)
    const send = presenting ?? baseFetch
    // Responses to POSTed messages are bounded; a GET opens a long-lived event stream whose total
    // size grows with the session, so each of its events is bounded instead (and it keeps the
    // session's signal: there is one GET per session).
    if (init?.method !== 'POST') return limitEvents(await checkAuth(await send(input, { ...init, headers })), deps.maxResponseBytes)
    // A POST also ends with the relay call that made it (call-context.ts): the SDK gives up on a
    // request at its timeout, but a server may keep that request's event stream open for ever.
    const call = liveCall()
    const link = linkSignal(init.signal ?? undefined, call?.ended)
    try {
      const response = await checkAuth(await send(input, { ...init, headers, signal: link.signal }))
      const limited = limitBody(response, deps.maxResponseBytes, call?.budget, link.release)
      return response.ok || !token ? limited : await withoutToken(limited, token)
    } catch (error) {
      link.release()
      throw error
    }
  }
}

const LF = 0x0a
const CR = 0x0d

/**
 * An event stream whose every event is counted against `maxBytes` and MAX_RESPONSE_SHAPE: the
 * SDK's event parser buffers an event whole, however long, so one endless event from a server
 * would fill memory, and parses it in one go. An empty line ends an event (the SSE format: CRLF,
 * LF or CR end a line). Anything else passes.
 */
function limitEvents(response: Response, maxBytes: number): Response {
  const body = response.body
  if (!body || !response.headers.get('content-type')?.includes('text/event-stream')) return response
  const reader = body.getReader()
  const events = new EventStreamShape(MAX_RESPONSE_SHAPE, { perEvent: true })
  let eventBytes = 0
  let lineBytes = 0
  let afterCR = false
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read()
      if (done) {
        controller.close()
        return
      }
      const problem = feedShape(events, value)
      if (problem) {
        controller.error(new UpstreamTooLargeError(EVENT, problem))
        await reader.cancel()
        return
      }
      for (const byte of value) {
        if (byte === LF && afterCR) {
          afterCR = false // the LF of a CRLF: the CR ended the line
          continue
        }
        afterCR = byte === CR
        if (byte === LF || byte === CR) {
          if (lineBytes === 0) eventBytes = 0
          lineBytes = 0
          continue
        }
        lineBytes++
        if (++eventBytes > maxBytes) {
          controller.error(new UpstreamTooLargeError(EVENT, largerThan(maxBytes)))
          await reader.cancel()
          return
        }
      }
      controller.enqueue(value)
    },
    cancel(reason) {
      return reader.cancel(reason)
    },
  })
  return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers })
}

/**
 * An error answer with the bearer token blanked out: careless servers show the request they
 * failed on, headers and all, and the SDK puts the body into the error the caller is answered
 * with (DESIGN.md §6: no token in an error message).
 */
async function withoutToken(response: Response, token: string): Promise<Response> {
  const text = await response.text()
  const headers = new Headers(response.headers)
  headers.delete('content-length')
  return new Response(text.replaceAll(token, '[redacted]'), { status: response.status, statusText: response.statusText, headers })
}

/** A 401/403 becomes UpstreamAuthError with the challenge; anything else passes. */
async function checkAuth(response: Response): Promise<Response> {
  if (response.status !== 401 && response.status !== 403) return response
  const challenge = challengeOf(response)
  await response.body?.cancel()
  throw new UpstreamAuthError(response.status, challenge)
}

/**
 * The challenge's `resource_metadata`, `scope` and `error`. The SDK reads a `Bearer` challenge
 * only; a `DPoP` one (RFC 9449 §7.1) carries the same parameters (RFC 9728 §5.1, RFC 6750 §3) and
 * is read the same way.
 */
function challengeOf(response: Response): UpstreamAuthError['challenge'] {
  const header = response.headers.get('www-authenticate')
  if (!header || !/^\s*dpop\s/i.test(header)) return extractWWWAuthenticateParams(response)
  return extractWWWAuthenticateParams(new Response(null, { headers: { 'www-authenticate': header.replace(/^\s*dpop/i, 'Bearer') } }))
}

/** A signal of this request's own that aborts with either parent, until `release` unhooks it. */
function linkSignal(...parents: Array<AbortSignal | undefined>): { signal: AbortSignal | undefined; release: () => void } {
  const linked = parents.filter((parent): parent is AbortSignal => parent !== undefined)
  if (linked.length === 0) return { signal: undefined, release: () => undefined }
  const controller = new AbortController()
  const hooks = linked.map((parent) => {
    const abort = () => controller.abort(parent.reason)
    if (parent.aborted) abort()
    else parent.addEventListener('abort', abort, { once: true })
    return () => parent.removeEventListener('abort', abort)
  })
  return { signal: controller.signal, release: () => hooks.forEach((unhook) => unhook()) }
}

/**
 * The response with its body counted against `maxBytes` and MAX_RESPONSE_SHAPE (its JSON, or the
 * JSON in its events), and against the call's `budget` when it has one (the bounds on all of its
 * answers together); `done` runs once the body is read, cancelled or failed.
 */
function limitBody(response: Response, maxBytes: number, budget: CallBudget | undefined, done: () => void): Response {
  const body = response.body
  if (!body) {
    done()
    return response
  }
  const declared = Number(response.headers.get('content-length'))
  const refuse = (error: UpstreamTooLargeError) => {
    void body.cancel()
    done()
    return error
  }
  if (declared > maxBytes) throw refuse(new UpstreamTooLargeError(RESPONSE, largerThan(maxBytes)))
  if (budget && declared > budget.left) throw refuse(new UpstreamTooLargeError(ALL_ANSWERS, largerThan(budget.total)))
  /** Counts `items` into the call's budget (its bytes are counted already); the error once past a bound. */
  const overBudget = (items: number) => {
    if (!budget) return undefined
    budget.itemsLeft -= items
    if (budget.left < 0) return new UpstreamTooLargeError(ALL_ANSWERS, largerThan(budget.total))
    if (budget.itemsLeft < 0) return new UpstreamTooLargeError(ALL_ANSWERS, `hold more than ${budget.itemsTotal.toLocaleString('en')} JSON items`)
    return undefined
  }
  const whole = wholeBodyOf(response)
  if (whole !== undefined) {
    // Read whole already (a short event-stream answer, as the JSON it carried): checked at once.
    const shape = new JsonShape(MAX_RESPONSE_SHAPE)
    if (!shape.stepText(whole)) throw refuse(new UpstreamTooLargeError(RESPONSE, shape.failure!))
    if (budget) budget.left -= declared
    const over = overBudget(shape.itemCount)
    if (over) throw refuse(over)
    done()
    return response
  }
  const isEventStream = response.headers.get('content-type')?.includes('text/event-stream') ?? false
  const shape = isEventStream ? new EventStreamShape(MAX_RESPONSE_SHAPE, { perEvent: false }) : new JsonShape(MAX_RESPONSE_SHAPE)
  // A pull-based wrapper rather than pipeThrough(TransformStream): a pipe costs several promises
  // and a second queue per chunk, on every call.
  const reader = body.getReader()
  let seen = 0
  let items = 0
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done: ended, value } = await reader.read()
        if (ended) {
          done()
          controller.close()
          return
        }
        seen += value.byteLength
        if (budget) budget.left -= value.byteLength
        const problem = seen > maxBytes ? largerThan(maxBytes) : feedShape(shape, value)
        const error = problem ? new UpstreamTooLargeError(RESPONSE, problem) : overBudget(shape.itemCount - items)
        items = shape.itemCount
        if (error) {
          done()
          controller.error(error)
          await reader.cancel()
          return
        }
        controller.enqueue(value)
      } catch (error) {
        done()
        controller.error(error)
      }
    },
    cancel(reason) {
      done()
      return reader.cancel(reason)
    },
  })
  return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers })
}
