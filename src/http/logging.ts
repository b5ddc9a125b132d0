import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyRequest, FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'
import { clientAddress, requestClient } from './client-address.ts'

/**
 * Field names whose values are secrets wherever they appear in a log line, at the top level and
 * two levels down (DESIGN.md §6): the request's `authorization` and `cookie` headers and the
 * response's `set-cookie` among them, and (sign-in binding) the confirmation form's token and
 * the one-time confirmation code.
 */
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
  'set-cookie',
  'csrf',
  'confirm_code',
  'confirmationCode',
  // Enterprise and workload grants: the ID token exchanged, and the assertion redeemed.
  'subject_token',
  'assertion',
]
const SECRET_DEPTH = 3
const CENSOR = '[redacted]'
const SECRET_FIELD_SET = new Set(SECRET_FIELDS)
/** A secret field's name as a key in JSON text; a line without one is written as it is. */
const MAY_HOLD_SECRET = new RegExp(`"(?:${SECRET_FIELDS.join('|')})":`)

/**
 * Redacts a finished log line (pino's `streamWrite` hook): one regular-expression test per line,
 * and a parse only for a line that names a secret field. pino's own `redact` with wildcard paths
 * (`*.access_token`, `*.*.access_token`, …) ran every value of every line through all of them,
 * parsing each path again each time: 35–49 µs of a request (docs/benchmarks.md).
 */
export function redactLine(line: string): string {
  if (!MAY_HOLD_SECRET.test(line)) return line
  const end = line.endsWith('\n') ? '\n' : ''
  let record: unknown
  try {
    record = JSON.parse(line)
  } catch {
    return line // not pino's JSON: nothing of ours to redact in it
  }
  redactFields(record, SECRET_DEPTH)
  return JSON.stringify(record) + end
}

function redactFields(value: unknown, depth: number): void {
  if (typeof value !== 'object' || value === null) return
  for (const [key, inner] of Object.entries(value)) {
    if (SECRET_FIELD_SET.has(key)) (value as Record<string, unknown>)[key] = CENSOR
    else if (depth > 1) redactFields(inner, depth - 1)
  }
}

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

/**
 * DESIGN.md §6 (audit): every `event` line written while a request is handled names the client
 * address behind it (client-address.ts), wherever in the relay it is written.
 */
function auditMixin(line: object): object {
  if (!('event' in line)) return {}
  const request = requestClient.getStore()
  return request === undefined ? {} : { clientAddress: clientAddress(request.ip) }
}

/** Adds redaction, the serializers above and the audit lines' client address to whatever logger options the caller gave. */
export function loggerOptions(given: LoggerOption | undefined, level: string): LoggerOption {
  if (given === false) return false
  const base = typeof given === 'object' && given !== null ? given : {}
  return {
    level,
    ...base,
    mixin: auditMixin,
    hooks: { ...base.hooks, streamWrite: redactLine },
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
