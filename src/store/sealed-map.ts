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
 *
 * `resealOnRead` also moves a value when it is read, for namespaces whose values are written once
 * and read for ever (client registrations): otherwise they stay on the old key, and retiring that
 * key loses them — for a registration, a new client whose id every stored refresh token fails
 * (oidc-provider: invalid_grant, "client mismatch"), i.e. everyone signed out. Not for tokens:
 * writing back what was read could overwrite a refresh that landed in between (and its rotated
 * refresh token with it); tokens move at their next refresh.
 */
export function createSealedMap<T>(deps: {
  keyv: Keyv
  sealer: Sealer
  logger: { warn(obj: object, msg: string): void }
  resealOnRead?: boolean
}): SealedMap<T> {
  const { keyv, sealer, logger } = deps
  const reported = new Set<string>()

  async function get(key: string): Promise<T | undefined> {
    // raw: the expiry comes along, so a value sealed again keeps its remaining life.
    const entry = deps.resealOnRead ? await keyv.get(key, { raw: true }) : undefined
    const sealed: unknown = deps.resealOnRead ? entry?.value : await keyv.get(key)
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
    if (opened.sealedWithOldKey && deps.resealOnRead) await reseal(key, opened.value, entry?.expires)
    return opened.value as T
  }

  async function reseal(key: string, value: unknown, expires: number | null | undefined): Promise<void> {
    const ttlMs = typeof expires === 'number' ? expires - Date.now() : undefined
    if (ttlMs !== undefined && ttlMs <= 0) return
    try {
      await keyv.set(key, sealer.seal(value, key), ttlMs)
    } catch (error) {
      // The value was read fine and stays on the old key; the next read tries again.
      logger.warn({ namespace: keyv.namespace, err: error }, 'sealed value not moved to the new key')
    }
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
