// DPoP proof checking for the peer MCP server, as a resource server does it (RFC 9449 §4.3, §7):
// a token bound to a key (`cnf.jkt`) is accepted only with the DPoP scheme and a proof signed by
// that key for this very request (htm, htu), this token (ath), recently (iat), once (jti), and
// with the server's nonce when it asks for one (§9).
import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose'

export type DpopVerdict =
  | { ok: true }
  | { ok: false; error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce'; description: string }

const ALGS = ['ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512', 'EdDSA']
const IAT_WINDOW_S = 60

export interface DpopProofChecker {
  check(req: IncomingMessage, presented: { scheme: string; token: string; jkt: string | undefined; url: string }): Promise<DpopVerdict>
  /** The nonce proofs must carry while nonces are demanded (undefined: none demanded). */
  nonce(): string | undefined
  /** Proofs answered with a `use_dpop_nonce` challenge. */
  nonceChallenges: number
}

export function createDpopProofChecker(options: { demandNonce?: boolean }): DpopProofChecker {
  const seenJtis = new Set<string>()
  const nonce = options.demandNonce ? randomBytes(16).toString('base64url') : undefined
  const checker: DpopProofChecker = {
    nonceChallenges: 0,
    nonce: () => nonce,
    async check(req, { scheme, token, jkt, url }) {
      if (!jkt) return scheme === 'dpop' ? { ok: false, error: 'invalid_token', description: 'the token is not bound to a DPoP key' } : { ok: true }
      // §7.2: a bound token presented as a bearer token is refused.
      if (scheme !== 'dpop') return { ok: false, error: 'invalid_token', description: 'a DPoP-bound token must be presented with the DPoP scheme' }
      const proof = req.headers.dpop
      if (typeof proof !== 'string' || proof.includes(',')) return { ok: false, error: 'invalid_dpop_proof', description: 'exactly one DPoP proof is required' }
      let payload
      let jwk
      try {
        ;({ payload, protectedHeader: { jwk } } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ALGS }))
      } catch (error) {
        return { ok: false, error: 'invalid_dpop_proof', description: `the proof does not verify (${(error as Error).message})` }
      }
      const expectedUrl = new URL(url)
      const problems = [
        payload.htm !== req.method && 'htm',
        payload.htu !== `${expectedUrl.origin}${expectedUrl.pathname}` && 'htu',
        (typeof payload.iat !== 'number' || Math.abs(Date.now() / 1000 - payload.iat) > IAT_WINDOW_S) && 'iat',
        payload.ath !== createHash('sha256').update(token).digest('base64url') && 'ath',
        (typeof payload.jti !== 'string' || seenJtis.has(payload.jti)) && 'jti',
      ].filter(Boolean)
      if (problems.length > 0) return { ok: false, error: 'invalid_dpop_proof', description: `the proof's ${problems.join(', ')} do not fit this request` }
      if ((await calculateJwkThumbprint(jwk!)) !== jkt) return { ok: false, error: 'invalid_token', description: 'the proof is signed by another key than the token is bound to' }
      if (nonce !== undefined && payload.nonce !== nonce) {
        checker.nonceChallenges++
        return { ok: false, error: 'use_dpop_nonce', description: 'a DPoP nonce is required' }
      }
      seenJtis.add(payload.jti as string)
      return { ok: true }
    },
  }
  return checker
}
