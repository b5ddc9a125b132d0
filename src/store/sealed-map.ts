import type { Keyv } from 'keyv'
import type { Sealer } from './seal.ts'

export interface SealedMap<T> {
  get(key: string): Promise<T | undefined>
  set(key: string, value: T, ttlMs?: number): Promise<void>
  delete(key: string): Promise<boolean>
}

// Bounds the memory spent remembering which unreadable keys were already reported.
const MAX_REPORTED = 10_000

/**
 * A Keyv namespace whose values are sealed (DESIGN.md §5: every value that holds a secret).
 * The storage key is bound into each seal, so a sealed value copied under another key (another
 * user's) does not open. A value no key opens (its key was removed from RELAY_ENCRYPTION_KEY, or
 * it was tampered with) reads as absent, reported once per key without the key or the value,
 * since keys can hold a user id or an OAuth state. Writes always seal with the first key, so
 * values sealed with an older key move to the new one as they are rewritten.
 */
export function createSealedMap<T>(deps: {
  keyv: Keyv
  sealer: Sealer
  logger: { warn(obj: object, msg: string): void }
}): SealedMap<T> {
  const { keyv, sealer, logger } = deps
  const reported = new Set<string>()

  async function get(key: string): Promise<T | undefined> {
    const sealed: unknown = await keyv.get(key)
    if (sealed === undefined) return undefined
    const opened = typeof sealed === 'string' ? sealer.open(sealed, key) : undefined
    if (opened === undefined) {
      if (!reported.has(key)) {
        if (reported.size >= MAX_REPORTED) reported.clear()
        reported.add(key)
        logger.warn({ namespace: keyv.namespace }, 'sealed value unreadable, treated as absent')
      }
      return undefined
    }
    return opened.value as T
  }

  async function set(key: string, value: T, ttlMs?: number): Promise<void> {
    reported.delete(key)
    await keyv.set(key, sealer.seal(value, key), ttlMs)
  }

  async function remove(key: string): Promise<boolean> {
    return keyv.delete(key)
  }

  return { get, set, delete: remove }
}
