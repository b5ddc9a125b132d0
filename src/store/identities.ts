import type { SealedMap } from './sealed-map.ts'
import { storeKey } from './keys.ts'

/**
 * A user's identity at the enterprise identity provider (DESIGN.md §3, `identity_provider`): the
 * ID token that the relay exchanges for each enterprise server's identity assertion grant, and
 * the refresh token that renews it. Stored sealed, one per (tenant, user).
 */
export interface ProviderIdentity {
  readonly idToken: string
  /** From a sign-in through the relay; none for an ID token an application posted (POST /oauth/identity). */
  readonly refreshToken: string | undefined
  /** Epoch ms: the ID token's `exp`. */
  readonly expiresAt: number
  /** The ID token's `sub`: a new identity for another subject replaces the user's enterprise tokens. */
  readonly subject: string
  readonly issuer: string
  readonly clientId: string
  readonly obtainedAt: number
}

export interface IdentityOwner {
  readonly tenant: string
  readonly userId: string
}

export interface IdentityStore {
  get(owner: IdentityOwner): Promise<ProviderIdentity | undefined>
  put(owner: IdentityOwner, identity: ProviderIdentity): Promise<void>
  /** True when one was there. */
  remove(owner: IdentityOwner): Promise<boolean>
}

/** Keyed by (tenant, user): a user only ever reaches their own (DESIGN.md §6). */
export function createIdentityStore(deps: { map: SealedMap<ProviderIdentity> }): IdentityStore {
  const key = (owner: IdentityOwner) => storeKey(owner.tenant, owner.userId)
  return {
    get: (owner) => deps.map.get(key(owner)),
    put: (owner, identity) => deps.map.set(key(owner), identity),
    remove: (owner) => deps.map.delete(key(owner)),
  }
}
