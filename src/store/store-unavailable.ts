import { isRelayError, RelayError } from '../errors.ts'

export type StoreKind = 'memory' | 'sqlite' | 'redis' | 'postgres'

/**
 * The longest any store call may take before its caller gets STORE_UNAVAILABLE. A backend that is
 * down must answer a 503 quickly, not hold a request until Dify's own 60 s tool timeout.
 */
export const STORE_TIMEOUT_MS = 2000

/** The one error callers see for a backend failure. Never carries the URL (it may hold a password). */
export function storeUnavailable(kind: StoreKind, cause: unknown): RelayError {
  return new RelayError('STORE_UNAVAILABLE', `The store (${kind}) did not answer`, { cause })
}

/**
 * Runs one backend call, bounded by `timeoutMs`. Outcomes: its result; or RelayError
 * STORE_UNAVAILABLE if it threw or did not settle in time (the call itself is left to finish or
 * fail on its own: nothing can cancel a query already sent).
 */
export async function callStore<T>(kind: StoreKind, call: () => T | Promise<T>, timeoutMs = STORE_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const work = (async () => call())()
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([work, deadline])
  } catch (error) {
    throw isRelayError(error, 'STORE_UNAVAILABLE') ? error : storeUnavailable(kind, error)
  } finally {
    clearTimeout(timer)
  }
}

/**
 * As callStore, for a backend that answers synchronously (node:sqlite runs its query on the event
 * loop): no timer can fire before such a call returns, so a deadline would never win the race and
 * only costs a timer per call. Its failures still become STORE_UNAVAILABLE.
 */
async function callSyncStore<T>(kind: StoreKind, call: () => T | Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (error) {
    throw isRelayError(error, 'STORE_UNAVAILABLE') ? error : storeUnavailable(kind, error)
  }
}

const DATA_CALLS = new Set(['get', 'getMany', 'set', 'setMany', 'delete', 'deleteMany', 'clear', 'has', 'hasMany'])

/**
 * Wraps a Keyv storage adapter so every data call is bounded and fails as STORE_UNAVAILABLE.
 * Wrapping the adapter rather than the Keyv instance keeps Keyv's own errors (a value it cannot
 * serialize) what they are. Everything else (namespace, opts, events, iterator) passes through,
 * bound to the adapter itself.
 */
export function guardAdapter<A extends object>(adapter: A, kind: StoreKind): A {
  const guard = kind === 'sqlite' ? callSyncStore : callStore
  // One wrapper per method, made on first use: Keyv looks its adapter's methods up on every call.
  const wrappers = new Map<string | symbol, { method: Function; wrapper: Function }>()
  return new Proxy(adapter, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      const known = wrappers.get(property)
      if (known?.method === value) return known.wrapper
      const wrapper =
        typeof property === 'string' && DATA_CALLS.has(property)
          ? (...args: unknown[]) => guard(kind, () => value.apply(target, args))
          : value.bind(target)
      wrappers.set(property, { method: value, wrapper })
      return wrapper
    },
    set(target, property, value) {
      return Reflect.set(target, property, value)
    },
  })
}
