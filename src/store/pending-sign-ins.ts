import type { SealedMap } from './sealed-map.ts'
import { tokenKey, type TokenOwner, type UpstreamToken } from './tokens.ts'

/**
 * A sign-in completed in the browser but not yet confirmed (SIGN_IN_CONFIRMATION=code, DESIGN.md
 * §6): its token is kept aside, sealed, until the user gives the assistant the one-time code.
 */
export interface PendingSignIn<T = UpstreamToken> {
  /** What the sign-in obtained: a server's tokens, or a user's identity at the identity provider (store/identities.ts). */
  readonly token: T
  /** Hash of the confirmation code (relay/confirmation-code.ts); the code itself is never stored. */
  readonly codeHash: string
  readonly wrongTries: number
  /** Epoch ms, by the relay's clock: the store's own TTL is only the backstop. */
  readonly expiresAt: number
}

export const PENDING_TTL_MS = 10 * 60 * 1000

export interface PendingSignInStore<T = UpstreamToken> {
  /** Keeps `token` aside for 10 minutes, replacing any earlier pending sign-in of this owner. */
  hold(owner: TokenOwner, token: T, codeHash: string): Promise<void>
  /** The live pending sign-in, or undefined (none, or its 10 minutes are over). */
  get(owner: TokenOwner): Promise<PendingSignIn<T> | undefined>
  /** Counts one wrong code; keeps the record's remaining life. */
  recordWrongTry(owner: TokenOwner, pending: PendingSignIn<T>): Promise<void>
  /** True when one was there. */
  remove(owner: TokenOwner): Promise<boolean>
}

export function createPendingSignInStore<T = UpstreamToken>(deps: { map: SealedMap<PendingSignIn<T>>; now: () => number }): PendingSignInStore<T> {
  const { map, now } = deps
  return {
    async hold(owner, token, codeHash) {
      const record: PendingSignIn<T> = { token, codeHash, wrongTries: 0, expiresAt: now() + PENDING_TTL_MS }
      await map.set(tokenKey(owner), record, PENDING_TTL_MS)
    },
    async get(owner) {
      const pending = await map.get(tokenKey(owner))
      if (!pending || now() < pending.expiresAt) return pending
      // Past its 10 minutes by the relay's clock: gone for good, whatever the store's TTL says.
      await map.delete(tokenKey(owner))
      return undefined
    },
    async recordWrongTry(owner, pending) {
      const ttlMs = pending.expiresAt - now()
      if (ttlMs <= 0) return
      await map.set(tokenKey(owner), { ...pending, wrongTries: pending.wrongTries + 1 }, ttlMs)
    },
    remove: (owner) => map.delete(tokenKey(owner)),
  }
}
