import { hash, randomBytes } from 'node:crypto'
import type { SealedMap } from './sealed-map.ts'

/** How long an `input_ref` can be answered (DESIGN.md §4). */
export const INPUT_TTL_MS = 10 * 60 * 1000

/** 32 random bytes, base64url: 256 bits, far beyond guessing. */
const REF_PATTERN = /^[A-Za-z0-9_-]{43}$/

/**
 * A call waiting for the user's answers (SEP-2322): whose call it is, what the server asked and
 * what the retry must echo. `requests` is relay/input-requests.ts's InputRequestEntry[].
 */
export interface PendingInput {
  readonly tenant: string
  readonly userId: string
  readonly serverId: string
  readonly toolName: string
  /** SHA-256 of the call's `input` in canonical JSON: a changed input does not continue the call. */
  readonly inputDigest: string
  /** The server's `requestState`, byte for byte; absent when it gave none. */
  readonly requestState?: string
  readonly requests: unknown[]
  /** What the relay answered itself (roots/list), sent with the user's answers. */
  readonly answered: Record<string, unknown>
  /** Rounds the call has had so far (at most 5, DESIGN.md §4). */
  readonly round: number
  /** Epoch ms, by the relay's clock: the store's own TTL is only the backstop. */
  readonly expiresAt: number
}

export interface InputStore {
  /** Keeps `input` for INPUT_TTL_MS; returns the `input_ref` that continues it. */
  keep(input: Omit<PendingInput, 'expiresAt'>): Promise<string>
  /** The pending input for `ref`, or undefined for an unknown, malformed or expired ref. Uses nothing up. */
  peek(ref: string): Promise<PendingInput | undefined>
  /** Uses `ref` up: true for the one caller that took it (concurrent retries: one wins). */
  take(ref: string): Promise<boolean>
}

/**
 * Calls waiting for the user's answers, in the sealed `inputs` namespace (DESIGN.md §5), found on
 * any replica. The ref is a capability, so it is stored only as its SHA-256 (DESIGN.md §6: a copy
 * of the store holds no live ref), and the value is sealed (it may hold the server's state).
 */
export function createInputStore(deps: { map: SealedMap<PendingInput>; now: () => number }): InputStore {
  const { map, now } = deps
  return {
    async keep(input) {
      const ref = randomBytes(32).toString('base64url')
      await map.set(storageKey(ref), { ...input, expiresAt: now() + INPUT_TTL_MS }, INPUT_TTL_MS)
      return ref
    },
    async peek(ref) {
      if (!REF_PATTERN.test(ref)) return undefined
      const pending = await map.get(storageKey(ref))
      return pending && now() < pending.expiresAt ? pending : undefined
    },
    take: (ref) => map.delete(storageKey(ref)),
  }
}

function storageKey(ref: string): string {
  return hash('sha256', ref, 'hex')
}

/** A digest of a JSON value that does not depend on the order of object keys. */
export function digestOf(value: unknown): string {
  return hash('sha256', canonicalJson(value), 'hex')
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object' && value !== null) {
    const entries = Object.keys(value as object)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}
