import type { webcrypto } from 'node:crypto'
import type { SealedMap } from './sealed-map.ts'
import { parseStoreKey, storeKey } from './keys.ts'
import type { TokenIndex } from './token-index.ts'

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
  /** `DPoP`: bound to `dpopKey` (RFC 9449) and sent with a proof; absent or `Bearer`: a bearer token. */
  readonly tokenType?: 'Bearer' | 'DPoP'
  /** The grant's DPoP key pair, sealed with its tokens (oauth/dpop.ts). */
  readonly dpopKey?: StoredDpopKey
}

/** A DPoP key pair as stored: its JWS algorithm and its private JWK, public members included. */
export interface StoredDpopKey {
  readonly alg: string
  readonly jwk: webcrypto.JsonWebKey
}

export interface TokenOwner {
  readonly tenant: string
  readonly userId: string
  readonly serverId: string
}

export interface TokenPage {
  readonly entries: Array<{ readonly owner: TokenOwner; readonly token: UpstreamToken }>
  /** The key to pass as `after` for the next page; undefined on the last page. */
  readonly next: string | undefined
}

export interface TokenStore {
  get(owner: TokenOwner): Promise<UpstreamToken | undefined>
  put(owner: TokenOwner, token: UpstreamToken): Promise<void>
  /** True when a token was there. */
  remove(owner: TokenOwner): Promise<boolean>
  /**
   * Stored tokens in key order (tenant, then user, then server), those matching every filter
   * given, `limit` at a time, starting after the key `after` (a previous page's `next`).
   */
  list(filter: Partial<TokenOwner>, page: { after: string | undefined; limit: number }): Promise<TokenPage>
}

/** Keys read from the index per round while a page fills (a server_id filter alone skips many). */
const SCAN_BATCH = 500

/**
 * Tokens live under (tenant, user, server): a user only ever reaches their own (DESIGN.md §6).
 * put and remove are the only writers of the tokens namespace and its index (token-index.ts).
 */
export function createTokenStore(deps: { map: SealedMap<UpstreamToken>; index: TokenIndex }): TokenStore {
  const { map, index } = deps

  async function list(filter: Partial<TokenOwner>, page: { after: string | undefined; limit: number }): Promise<TokenPage> {
    // The key's leading parts narrow the range the index scans; the rest is checked per key.
    const prefix = filter.tenant === undefined ? '' : `${storeKey(filter.tenant)}:${filter.userId === undefined ? '' : `${storeKey(filter.userId)}:`}`
    const want = page.limit + 1 // one more than a page, to know whether another page follows
    const found: Array<{ key: string; owner: TokenOwner; token: UpstreamToken }> = []
    let after = page.after
    while (found.length < want) {
      const keys = await index.range(prefix, after, SCAN_BATCH)
      const candidates = keys.flatMap((key) => {
        const owner = ownerOfKey(key)
        return owner && matches(owner, filter) ? [{ key, owner }] : []
      })
      // Read only as many tokens as the page may still take; the index may name a removed one.
      const reading = candidates.slice(0, want - found.length)
      const tokens = await Promise.all(reading.map(({ key }) => map.get(key)))
      reading.forEach((candidate, i) => {
        const token = tokens[i]
        if (token) found.push({ ...candidate, token })
      })
      if (reading.length < candidates.length) after = reading.at(-1)!.key
      else if (keys.length < SCAN_BATCH) break
      else after = keys.at(-1)!
    }
    const entries = found.slice(0, page.limit)
    return {
      entries: entries.map(({ owner, token }) => ({ owner, token })),
      next: found.length > page.limit ? entries.at(-1)!.key : undefined,
    }
  }

  return {
    get: (owner) => map.get(tokenKey(owner)),
    async put(owner, token) {
      const key = tokenKey(owner)
      await index.add(key)
      await map.set(key, token)
    },
    async remove(owner) {
      const key = tokenKey(owner)
      const removed = await map.delete(key)
      await index.remove(key)
      return removed
    },
    list,
  }
}

export function tokenKey(owner: TokenOwner): string {
  return storeKey(owner.tenant, owner.userId, owner.serverId)
}

function ownerOfKey(key: string): TokenOwner | undefined {
  const parts = parseStoreKey(key)
  if (parts?.length !== 3) return undefined
  const [tenant, userId, serverId] = parts as [string, string, string]
  return { tenant, userId, serverId }
}

function matches(owner: TokenOwner, filter: Partial<TokenOwner>): boolean {
  return (
    (filter.tenant === undefined || owner.tenant === filter.tenant) &&
    (filter.userId === undefined || owner.userId === filter.userId) &&
    (filter.serverId === undefined || owner.serverId === filter.serverId)
  )
}
