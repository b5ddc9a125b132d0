/** The part of a pino logger the store uses (pino's `(mergingObject, message)` call form). */
export interface StoreLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
}

export const silentLogger: StoreLogger = { info() {}, warn() {}, error() {} }
