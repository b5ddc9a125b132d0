/** The relay's request-level error codes. `http/error-handler.ts` maps each to its HTTP status. */
export type RelayErrorCode =
  | 'INVALID_INPUT'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'UNKNOWN_SERVER'
  | 'NOT_FOUND'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMITED'
  | 'STORE_UNAVAILABLE'
  | 'INTERNAL'

/**
 * The one error type the relay throws on purpose. Expected outcomes (a user must sign in, an
 * upstream tool failed) are return values, not RelayErrors.
 */
export class RelayError extends Error {
  readonly code: RelayErrorCode

  constructor(code: RelayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RelayError'
    this.code = code
  }
}

export function isRelayError(error: unknown, code?: RelayErrorCode): error is RelayError {
  return error instanceof RelayError && (code === undefined || error.code === code)
}
