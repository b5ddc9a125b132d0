import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyRequest, FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'

/** Field names whose values are secrets wherever they appear in a log line (DESIGN.md §6). */
const SECRET_FIELDS = [
  'access_token',
  'refresh_token',
  'id_token',
  'code',
  'state',
  'client_secret',
  'code_verifier',
  'authorization',
  'cookie',
  // DESIGN.md §6 sign-in binding: the confirmation form's token and the one-time confirmation code.
  'csrf',
  'confirm_code',
  'confirmationCode',
]

/** pino `redact` paths: the headers by name, and each secret field at the top level and two levels down. */
export const REDACT_PATHS: readonly string[] = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
]

/**
 * Logs a request without anything secret in its URL: the OAuth routes carry `code` and `state`
 * in the query and the login ticket in the path, and a file link's id is what fetches the file,
 * so only their fixed path is logged.
 */
function serializeRequest(request: FastifyRequest) {
  return {
    method: request.method,
    url: loggablePath(request.url),
    remoteAddress: request.ip,
  }
}

export function loggablePath(url: string): string {
  if (url.startsWith('/files/')) return '/files/:id'
  if (!url.startsWith('/oauth/')) return url
  const path = url.split('?', 1)[0]!
  return path.startsWith('/oauth/start/') ? '/oauth/start/:ticket' : path
}

interface SerializedError {
  type: string
  message: string
  stack: string | undefined
  /** An error's own `code` is logged as `errorCode`: `code` is redacted as an OAuth code. */
  errorCode?: unknown
  statusCode?: unknown
  cause?: SerializedError | string
}

/**
 * Logs an error's name, message, stack, `code` and `statusCode` and its chain of Error causes,
 * nothing else: library errors carry response bodies and, in openid-client's callback errors,
 * the callback's parameters (code, state) as a non-Error `cause`, which is logged by type only.
 */
function serializeError(error: unknown, depth = 0): SerializedError | string {
  if (!(error instanceof Error)) return `[${typeof error === 'object' && error !== null ? error.constructor?.name ?? 'object' : typeof error}]`
  const { code, statusCode } = error as { code?: unknown; statusCode?: unknown }
  return {
    type: error.name,
    message: error.message,
    stack: error.stack,
    ...(code === undefined ? {} : { errorCode: code }),
    ...(statusCode === undefined ? {} : { statusCode }),
    ...(error.cause === undefined || depth >= 3 ? {} : { cause: serializeError(error.cause, depth + 1) }),
  }
}

type LoggerOption = FastifyServerOptions['logger']

/** Adds redaction and the serializers above to whatever logger options the caller gave. */
export function loggerOptions(given: LoggerOption | undefined, level: string): LoggerOption {
  if (given === false) return false
  const base = typeof given === 'object' && given !== null ? given : {}
  return {
    level,
    ...base,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    serializers: { ...base.serializers, req: serializeRequest as never, err: serializeError as never },
  }
}

/**
 * Where log lines go: readable lines through pino-pretty when stdout is a terminal (a person is
 * reading), pino's own JSON to stdout otherwise (undefined: pino's default destination), which is
 * what log collectors parse. Redaction and serializers run before either, in pino itself.
 */
export async function logDestination(isTTY: boolean | undefined, out: NodeJS.WritableStream = process.stdout): Promise<DestinationStream | undefined> {
  if (!isTTY) return undefined
  const { default: pretty } = await import('pino-pretty')
  // sync: a line is on the terminal before the process exits (shutdown calls process.exit).
  return pretty({ destination: out, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Keeps a caller's (or a proxy's) `X-Request-Id` when it is a plain token, so logs join up; else a UUID. */
export function generateRequestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID()
}
