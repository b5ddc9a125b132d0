import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { RelayError, type RelayErrorCode } from '../errors.ts'
import { sendPage } from './pages/html-page.ts'
import { errorPage, isBrowserPath } from './pages/sign-in-pages.ts'

/** The only map from the relay's error codes to HTTP statuses (DESIGN.md §4). */
export const STATUS: Record<RelayErrorCode, number> = {
  INVALID_INPUT: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  UNKNOWN_SERVER: 400,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  STORE_UNAVAILABLE: 503,
  INTERNAL: 500,
}

export const BODY_LIMIT_BYTES = 1024 * 1024

const NOT_A_JSON_BODY = 'the body must be a JSON object sent with Content-Type: application/json'

/** Fastify's own request errors, by code, in our words. */
const FASTIFY_ERRORS: Readonly<Record<string, [RelayErrorCode, string]>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ['PAYLOAD_TOO_LARGE', 'the body must be at most 1 MiB'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ['INVALID_INPUT', NOT_A_JSON_BODY],
  FST_ERR_CTP_EMPTY_JSON_BODY: ['INVALID_INPUT', 'the body must be a JSON object; it was empty'],
  FST_ERR_CTP_INVALID_JSON_BODY: ['INVALID_INPUT', 'the body must be a JSON object; it is not valid JSON'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['INVALID_INPUT', 'the body does not match its Content-Length'],
  FST_ERR_BAD_URL: ['INVALID_INPUT', 'the URL is not valid'],
  FST_ERR_MAX_PARAM_LENGTH: ['NOT_FOUND', 'there is no such page'],
}

/** Any 4xx a library raised that is not listed above. */
function codeForClientStatus(status: number): RelayErrorCode {
  if (status === 404) return 'NOT_FOUND'
  if (status === 413) return 'PAYLOAD_TOO_LARGE'
  if (status === 429) return 'RATE_LIMITED'
  return 'INVALID_INPUT'
}

/**
 * Turns whatever was thrown into a RelayError fit to show the caller: RelayErrors as they are
 * (their messages are written for callers), Fastify's request errors in our words, and anything
 * else as INTERNAL with a generic message (the original stays in `cause` for the log).
 */
export function toRelayError(error: unknown, requestId: string): RelayError {
  if (error instanceof RelayError) return error
  const { code, statusCode } = (error ?? {}) as Partial<FastifyError>
  const known = code === undefined ? undefined : FASTIFY_ERRORS[code]
  if (known) return new RelayError(known[0], known[1], { cause: error })
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    const clientCode = codeForClientStatus(statusCode)
    const message = clientCode === 'RATE_LIMITED' ? 'there were too many requests; try again in a minute' : 'the request is not valid'
    return new RelayError(clientCode, message, { cause: error })
  }
  return new RelayError('INTERNAL', `the relay failed unexpectedly; its operator can look up request id ${requestId} in the logs`, {
    cause: error,
  })
}

/** One log line per failed request, at the level its status calls for (the relay's fault: error). */
function logFailure(request: FastifyRequest, error: RelayError, thrown: unknown): void {
  if (STATUS[error.code] >= 500) {
    request.log.error({ err: thrown, errorCode: error.code }, 'request failed')
  } else {
    request.log.info({ errorCode: error.code, reason: error.message }, 'request rejected')
  }
}

export function sendError(request: FastifyRequest, reply: FastifyReply, thrown: unknown): FastifyReply {
  const error = toRelayError(thrown, String(request.id))
  const status = STATUS[error.code]
  logFailure(request, error, thrown)
  // RFC 9110 §15.5.2: a 401 carries a challenge.
  if (status === 401) reply.header('www-authenticate', 'Bearer')
  if (isBrowserPath(request.url)) return sendPage(reply, status, errorPage(error))
  return reply
    .code(status)
    .header('content-type', 'application/json; charset=utf-8')
    .send({ error: { code: error.code, message: error.message } })
}

/**
 * Relay-side transient faults as the three tool routes answer them (DESIGN.md §4): HTTP 200 with
 * `ok: false`, because Dify's HTTP client retries 429 and 5xx (api/core/helper/ssrf_proxy.py,
 * STATUS_FORCELIST) and a tool call allows no retry, so it raises "Reached maximum retries (0)
 * for URL …" and the model never sees our message. Any such code raised on a tool route answers
 * this way, whoever raised it; `retrySeconds` is the hint the model passes on.
 */
const TOOL_ROUTE_FAULTS: Partial<Record<RelayErrorCode, { retrySeconds: number; message: (error: RelayError) => string }>> = {
  // Long enough for a restarted Redis or PostgreSQL to be back; the store call itself gave up after 2 s.
  STORE_UNAVAILABLE: {
    retrySeconds: 10,
    message: () =>
      'The MCP relay cannot reach its store right now, so this request could not be completed. Tell the user the MCP tools are briefly unavailable, and try again in about 10 seconds.',
  },
  // The limiter's own message says what was limited and for how long.
  RATE_LIMITED: { retrySeconds: 60, message: (error) => error.message },
}

/**
 * The error handler of the tool routes: a transient fault answers 200 `{ ok: false, error_code,
 * retry_after_seconds, message }`, logged as the error it is; everything else as `sendError`.
 */
export function sendToolRouteError(request: FastifyRequest, reply: FastifyReply, thrown: unknown): FastifyReply {
  const error = toRelayError(thrown, String(request.id))
  const fault = TOOL_ROUTE_FAULTS[error.code]
  if (!fault) return sendError(request, reply, thrown)
  logFailure(request, error, thrown)
  return reply
    .code(200)
    .header('content-type', 'application/json; charset=utf-8')
    .send({ ok: false, error_code: error.code, retry_after_seconds: fault.retrySeconds, message: fault.message(error) })
}

/** Errors Fastify meets before routing (bad URL, over-long parameter): same answers as the rest. */
export function handleFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  sendError(request, reply, error)
}

/** Node's own refusals, by code: the HTTP parser's errors and its timeouts. */
const CLIENT_ERRORS: Readonly<Record<string, [number, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'the request headers must be at most 16 KiB'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'the request did not arrive in time'],
}

/**
 * Requests Node refuses before Fastify sees them (headers over the limit, a malformed request
 * line, a timeout) get the same error shape as every other answer, not Fastify's own
 * `{ error, message, statusCode }`. Fastify's `clientErrorHandler`: called with the instance as `this`.
 */
export function handleClientError(this: FastifyInstance, error: NodeJS.ErrnoException, socket: Duplex): void {
  // Node's "clientError" contract: a reset connection has nobody left to answer.
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, message] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'the request is not valid HTTP']
  this.log.debug({ err: error }, 'request refused by the HTTP parser')
  if (socket.writable) {
    const body = JSON.stringify({ error: { code: 'INVALID_INPUT', message } })
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(error)
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => sendError(request, reply, error))
  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new RelayError('NOT_FOUND', 'there is no such route; the API is described at /openapi.json')),
  )
}
