import { createHash, randomBytes, type webcrypto } from 'node:crypto'
import { SignJWT } from 'jose'
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
 * answers an authorization server's `use_dpop_nonce` with one retry (its grant functions retry
 * once when `isDPoPNonceError`). openid-client has no DPoP for revocation requests and no
 * public way to make a proof for a request it does not send itself (its handle's `addProof` is
 * not part of its API), so proofs for MCP requests and revocation are made here, with jose,
 * which openid-client itself is built on.
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

/** A stored key, ready to sign proofs, with the nonces servers gave for it, per origin (RFC 9449 §8, §9). */
export interface DpopSigner {
  readonly alg: string
  readonly privateKey: webcrypto.CryptoKey
  readonly publicJwk: webcrypto.JsonWebKey
  readonly nonces: Map<string, string>
}

export async function createDpopSigner(key: DpopKey): Promise<DpopSigner> {
  const { privateKey } = await importKeyPair(key)
  return { alg: key.alg, privateKey, publicJwk: publicJwkOf(key.jwk), nonces: new Map() }
}

/**
 * RFC 9449 §4.2 and §7.1: the headers that present `accessToken` (if any) with a proof for one
 * request: `Authorization: DPoP <token>` and `DPoP: <proof>`, the proof carrying a fresh `jti`,
 * `htm` (the method) and `htu` (the URL without query and fragment), `iat`, `ath` (the token's
 * SHA-256) and the server's `nonce` when it gave one.
 */
export async function dpopHeaders(
  signer: DpopSigner,
  request: { method: string; url: URL; accessToken?: string | undefined; nonce?: string | undefined },
): Promise<{ authorization?: string; dpop: string }> {
  const claims: Record<string, string> = { htm: request.method.toUpperCase(), htu: `${request.url.origin}${request.url.pathname}` }
  if (request.accessToken !== undefined) claims.ath = createHash('sha256').update(request.accessToken).digest('base64url')
  if (request.nonce !== undefined) claims.nonce = request.nonce
  const proof = await new SignJWT(claims)
    .setProtectedHeader({ typ: 'dpop+jwt', alg: signer.alg, jwk: signer.publicJwk })
    .setJti(randomBytes(16).toString('base64url'))
    .setIssuedAt()
    .sign(signer.privateKey)
  return request.accessToken === undefined ? { dpop: proof } : { authorization: `DPoP ${request.accessToken}`, dpop: proof }
}

/**
 * `fetch` with a DPoP proof on every request (and `accessToken` presented with it, when given).
 * A server's `DPoP-Nonce` is kept for its origin and put into later proofs; a request refused for
 * want of a nonce (an MCP server's 401 `DPoP error="use_dpop_nonce"`, RFC 9449 §9) is sent once
 * more with the new nonce. (An authorization server's nonce, §8, is openid-client's to answer on
 * token requests; RFC 9449 defines none for revocation.)
 */
export function withDpop(fetch: FetchLike, signer: DpopSigner | Promise<DpopSigner>, accessToken?: string): FetchLike {
  return async (input, init) => {
    const dpop = await signer
    const url = new URL(input)
    const method = init?.method ?? 'GET'
    const send = async (nonce: string | undefined) => {
      const headers = new Headers(init?.headers)
      for (const [name, value] of Object.entries(await dpopHeaders(dpop, { method, url, accessToken, nonce }))) headers.set(name, value)
      const response = await fetch(input, { ...init, headers })
      const given = response.headers.get('dpop-nonce')
      if (given) dpop.nonces.set(url.origin, given)
      return response
    }
    const sent = dpop.nonces.get(url.origin)
    const response = await send(sent)
    const nonce = response.headers.get('dpop-nonce')
    if (!nonce || nonce === sent || !isResendable(init?.body) || !isNonceChallenge(response)) return response
    await response.body?.cancel()
    return send(nonce)
  }
}

/**
 * Keys of the DPoP-bound tokens in use, by access token, for the requests of pooled MCP sessions
 * (which know a session's token, not its grant). Bounded: the least recently used go first.
 */
export function createDpopKeyring(maxKeys: number) {
  const keys = new Map<string, { key: DpopKey; signer?: Promise<DpopSigner> }>()
  return {
    /** Makes a DPoP-bound token's key known; a bearer token is left out. */
    remember(token: { accessToken: string; tokenType?: string | undefined; dpopKey?: DpopKey | undefined }): void {
      if (token.tokenType !== 'DPoP' || !token.dpopKey || keys.has(token.accessToken)) return
      keys.set(token.accessToken, { key: token.dpopKey })
      if (keys.size > maxKeys) keys.delete(keys.keys().next().value!)
    },
    /** The signer for a remembered token, or undefined for a bearer token. */
    signerFor(accessToken: string): Promise<DpopSigner> | undefined {
      const entry = keys.get(accessToken)
      if (!entry) return undefined
      keys.delete(accessToken)
      keys.set(accessToken, entry)
      entry.signer ??= createDpopSigner(entry.key)
      return entry.signer
    },
  }
}

export type DpopKeyring = ReturnType<typeof createDpopKeyring>

/** A stream is used up once sent: the request is not sent twice (the SDK sends strings). */
function isResendable(body: unknown): boolean {
  return body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams
}

/** RFC 9449 §9: a 401 whose challenge says `error="use_dpop_nonce"`. */
function isNonceChallenge(response: Response): boolean {
  return response.status === 401 && /\berror="?use_dpop_nonce\b/i.test(response.headers.get('www-authenticate') ?? '')
}

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
