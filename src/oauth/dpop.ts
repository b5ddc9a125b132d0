import type { webcrypto } from 'node:crypto'
import { DpopSession, withDpop as sdkWithDpop } from '@modelcontextprotocol/client'
import { calculateJwkThumbprint } from 'jose'
import * as oidc from 'openid-client'
import type { DpopMode } from '../config/load-config.ts'
import type { StoredDpopKey } from '../store/tokens.ts'
import { DiscoveryError } from './discovery.ts'
import type { FetchLike } from './url-guard.ts'

/**
 * RFC 9449 (DPoP): tokens bound to a key pair the relay holds, one pair per grant, stored sealed
 * with the grant's tokens. Token, refresh and revocation requests and every MCP request carry a
 * fresh proof signed with it, so a copied token is useless without the key.
 *
 * Token requests get their proofs from openid-client's DPoP handle (`getDPoPHandle`), which also
 * answers an authorization server's `use_dpop_nonce` with one retry. MCP requests get theirs from
 * the MCP SDK's `DpopSession` and `withDpop` (a proof per request, an MCP server's nonce
 * challenge answered once, nonces kept per origin), built on the grant's stored key. openid-client
 * makes no proof for revocation, so a revocation request gets one from the same `DpopSession`.
 */

/** The algorithms the relay makes keys for, in its order of preference (RFC 7518 §3.1). */
const DPOP_ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'RS256'] as const
export type DpopAlg = (typeof DPOP_ALGS)[number]

/** A grant's key pair as stored (sealed with the token): the private JWK, public members included. */
export type DpopKey = StoredDpopKey

/**
 * The DPoP algorithm to use with an authorization server, or undefined for bearer tokens:
 * `auto` uses DPoP when the metadata lists an algorithm the relay can make keys for (RFC 9449
 * §5.1 `dpop_signing_alg_values_supported`), `off` never. `required` throws DiscoveryError for a
 * server that lists none: the server's error, not a bearer token.
 */
export function dpopAlgFor(mode: DpopMode, metadata: { issuer: string; dpop_signing_alg_values_supported?: unknown }): DpopAlg | undefined {
  if (mode === 'off') return undefined
  const listed = metadata.dpop_signing_alg_values_supported
  const alg = Array.isArray(listed) ? DPOP_ALGS.find((candidate) => listed.includes(candidate)) : undefined
  if (!alg && mode === 'required') {
    throw new DiscoveryError(
      `authorization server ${metadata.issuer} does not offer DPoP with ${DPOP_ALGS.join(', ')} (dpop_signing_alg_values_supported), which this server's entry requires ("dpop": "required")`,
    )
  }
  return alg
}

/** A key pair for a new grant at this authorization server, or undefined for a bearer grant (see dpopAlgFor). */
export async function newGrantKey(mode: DpopMode, metadata: { issuer: string; dpop_signing_alg_values_supported?: unknown }): Promise<DpopKey | undefined> {
  const alg = dpopAlgFor(mode, metadata)
  return alg && newDpopKey(alg)
}

/** A new key pair for one grant (openid-client's randomDPoPKeyPair), exported for the store. */
export async function newDpopKey(alg: DpopAlg): Promise<DpopKey> {
  const pair = await oidc.randomDPoPKeyPair(alg, { extractable: true })
  return { alg, jwk: await crypto.subtle.exportKey('jwk', pair.privateKey) }
}

/** openid-client's options for a token request with a proof of `key` (`undefined`: a bearer grant). */
export async function dpopOptions(config: oidc.Configuration, key: DpopKey | undefined): Promise<oidc.DPoPOptions | undefined> {
  if (!key) return undefined
  return { DPoP: oidc.getDPoPHandle(config, await importKeyPair(key)) }
}

/** A stored key as the MCP SDK's DPoP session: it signs proofs and keeps the nonces servers gave, per origin (RFC 9449 §8, §9). */
export async function createDpopSession(key: DpopKey): Promise<DpopSession> {
  const { privateKey, publicKey } = await importKeyPair(key)
  const publicJwk = publicJwkOf(key.jwk)
  return DpopSession.create({ keyPair: { privateKey, publicKey, publicJwk, thumbprint: await calculateJwkThumbprint(publicJwk as Parameters<typeof calculateJwkThumbprint>[0]), alg: key.alg as DpopAlg } })
}

/**
 * RFC 9449 §7.1: `fetch` presenting `accessToken` as `Authorization: DPoP` with a proof of the
 * session's key on every request (the SDK's `withDpop`: `ath`, a fresh `jti`, `htm`, `htu`
 * without query and fragment, the origin's nonce, one retry on an MCP server's `use_dpop_nonce`).
 */
export function withDpop(fetch: FetchLike, session: DpopSession | Promise<DpopSession>, accessToken: string): FetchLike {
  return sdkWithDpop(() => session, () => accessToken)(fetch)
}

/**
 * `fetch` with a proof of the session's key and no token (RFC 9449 §4.2: no `ath`): a revocation
 * request, which RFC 7009 authenticates as the client, not with the token it revokes.
 */
export function withDpopProof(fetch: FetchLike, session: Promise<DpopSession>): FetchLike {
  return async (input, init) => {
    const dpop = await session
    const headers = new Headers(init?.headers)
    headers.set('dpop', await dpop.buildProof({ htm: init?.method ?? 'GET', htu: input }))
    const response = await fetch(input, { ...init, headers })
    dpop.observeNonce(response, input)
    return response
  }
}

/**
 * Keys of the DPoP-bound tokens in use, by access token, for the requests of pooled MCP sessions
 * (which know a session's token, not its grant). Bounded: the least recently used go first.
 */
export function createDpopKeyring(maxKeys: number) {
  const keys = new Map<string, { key: DpopKey; session?: Promise<DpopSession> }>()
  return {
    /** Makes a DPoP-bound token's key known; a bearer token is left out. */
    remember(token: { accessToken: string; tokenType?: string | undefined; dpopKey?: DpopKey | undefined }): void {
      if (token.tokenType !== 'DPoP' || !token.dpopKey || keys.has(token.accessToken)) return
      keys.set(token.accessToken, { key: token.dpopKey })
      if (keys.size > maxKeys) keys.delete(keys.keys().next().value!)
    },
    /** The DPoP session of a remembered token, or undefined for a bearer token. */
    sessionFor(accessToken: string): Promise<DpopSession> | undefined {
      const entry = keys.get(accessToken)
      if (!entry) return undefined
      keys.delete(accessToken)
      keys.set(accessToken, entry)
      entry.session ??= createDpopSession(entry.key)
      return entry.session
    },
  }
}

export type DpopKeyring = ReturnType<typeof createDpopKeyring>

const PRIVATE_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'key_ops', 'ext'])

function publicJwkOf(jwk: webcrypto.JsonWebKey): webcrypto.JsonWebKey {
  return Object.fromEntries(Object.entries(jwk).filter(([member]) => !PRIVATE_MEMBERS.has(member))) as webcrypto.JsonWebKey
}

function importParams(alg: string): webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams {
  switch (alg as DpopAlg) {
    case 'ES256':
      return { name: 'ECDSA', namedCurve: 'P-256' }
    case 'ES384':
      return { name: 'ECDSA', namedCurve: 'P-384' }
    case 'ES512':
      return { name: 'ECDSA', namedCurve: 'P-521' }
    case 'PS256':
      return { name: 'RSA-PSS', hash: 'SHA-256' }
    case 'RS256':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
    default:
      throw new TypeError(`a stored DPoP key has an algorithm the relay does not use (${alg})`)
  }
}

/** The stored key as CryptoKeys; the public one extractable, as openid-client's handle puts it into proofs. */
async function importKeyPair(key: DpopKey): Promise<webcrypto.CryptoKeyPair> {
  const params = importParams(key.alg)
  const { key_ops: _ops, ext: _ext, ...privateJwk } = key.jwk
  const [privateKey, publicKey] = await Promise.all([
    crypto.subtle.importKey('jwk', privateJwk, params, false, ['sign']),
    crypto.subtle.importKey('jwk', publicJwkOf(key.jwk), params, true, ['verify']),
  ])
  return { privateKey, publicKey }
}
