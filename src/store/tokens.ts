import type { SealedMap } from './sealed-map.ts'
import { storeKey } from './keys.ts'

/** One user's upstream token set for one server (stored sealed). */
export interface UpstreamToken {
  readonly accessToken: string
  readonly refreshToken: string | undefined
  /** Epoch ms; undefined when the server gave no `expires_in`. */
  readonly expiresAt: number | undefined
  /** Granted scopes, space separated, as the token response (or the request) said. */
  readonly scope: string | undefined
  readonly issuer: string
  readonly clientId: string
  readonly resource: string
  readonly obtainedAt: number
}

export interface TokenOwner {
  readonly tenant: string
  readonly userId: string
  readonly serverId: string
}

export interface TokenStore {
  get(owner: TokenOwner): Promise<UpstreamToken | undefined>
  put(owner: TokenOwner, token: UpstreamToken): Promise<void>
  /** True when a token was there. */
  remove(owner: TokenOwner): Promise<boolean>
}

/** Tokens live under (tenant, user, server): a user only ever reaches their own (DESIGN.md §6). */
export function createTokenStore(deps: { map: SealedMap<UpstreamToken> }): TokenStore {
  return {
    get: (owner) => deps.map.get(tokenKey(owner)),
    put: (owner, token) => deps.map.set(tokenKey(owner), token),
    remove: (owner) => deps.map.delete(tokenKey(owner)),
  }
}

export function tokenKey(owner: TokenOwner): string {
  return storeKey(owner.tenant, owner.userId, owner.serverId)
}
