// The DPoP proofs the relay makes itself (RFC 9449 §4.2, §7.1) with the MCP SDK's DpopSession on a
// grant's stored key: for MCP requests and revocation. Checked with jose, as a resource server
// checks them: the proof's signature by the embedded key, its claims against the request, and the
// key's thumbprint against the stored key's.
import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { createDpopKeyring, createDpopSession, dpopAlgFor, newDpopKey, withDpop, withDpopProof } from '../../src/oauth/dpop.ts'
import { DiscoveryError } from '../../src/oauth/discovery.ts'
import type { FetchLike } from '../../src/oauth/url-guard.ts'

/** A fetch that records the headers of every request and answers 200 with `DPoP-Nonce: <nonce>`. */
function recordingFetch(nonce?: string): { fetch: FetchLike; sent: Headers[] } {
  const sent: Headers[] = []
  return {
    sent,
    fetch: async (_url, init) => {
      sent.push(new Headers(init?.headers))
      return new Response('{}', { headers: nonce ? { 'dpop-nonce': nonce } : {} })
    },
  }
}

describe('withDpop (MCP requests)', () => {
  it('presents the token with the DPoP scheme and a proof of the stored key for exactly this request, with the nonce the server gave', async () => {
    const key = await newDpopKey('ES256')
    const { fetch, sent } = recordingFetch('n-1')
    const send = withDpop(fetch, createDpopSession(key), 'the-token')
    await send('https://mcp.example.com/mcp?session=1#x', { method: 'post' })
    await send('https://mcp.example.com/mcp', { method: 'POST' })
    expect(sent.map((headers) => headers.get('authorization'))).toEqual(['DPoP the-token', 'DPoP the-token'])

    const [first, second] = await Promise.all(sent.map((headers) => jwtVerify(headers.get('dpop')!, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] })))
    // The header carries the public key only, the stored key's.
    expect(Object.keys(first!.protectedHeader.jwk!).sort()).toEqual(['crv', 'kty', 'x', 'y'])
    expect(await calculateJwkThumbprint(first!.protectedHeader.jwk!)).toBe(await calculateJwkThumbprint({ kty: key.jwk.kty!, crv: key.jwk.crv!, x: key.jwk.x!, y: key.jwk.y! }))
    expect(first!.payload).toMatchObject({ htm: 'POST', htu: 'https://mcp.example.com/mcp', ath: createHash('sha256').update('the-token').digest('base64url') })
    expect(first!.payload.nonce).toBeUndefined()
    expect(second!.payload.nonce).toBe('n-1')
    expect(Math.abs(first!.payload.iat! - Date.now() / 1000)).toBeLessThan(5)
    expect(first!.payload.jti).not.toBe(second!.payload.jti)
  })

  it('signs with RSA keys too, as the server lists them', async () => {
    expect(dpopAlgFor('auto', { issuer: 'https://as.example.com', dpop_signing_alg_values_supported: ['RS256'] })).toBe('RS256')
    const { fetch, sent } = recordingFetch()
    await withDpop(fetch, createDpopSession(await newDpopKey('PS256')), 't')('https://mcp.example.com/mcp', { method: 'GET' })
    const proof = sent[0]!.get('dpop')!
    expect(decodeProtectedHeader(proof).alg).toBe('PS256')
    expect((await jwtVerify(proof, EmbeddedJWK)).payload.htm).toBe('GET')
  })
})

describe('withDpopProof (revocation)', () => {
  it('makes a fresh jti for every proof, and no ath or Authorization without a token', async () => {
    const { fetch, sent } = recordingFetch()
    const send = withDpopProof(fetch, createDpopSession(await newDpopKey('ES256')))
    await Promise.all(Array.from({ length: 20 }, () => send('https://as.example.com/revoke', { method: 'POST' })))
    const payloads = await Promise.all(sent.map(async (headers) => (await jwtVerify(headers.get('dpop')!, EmbeddedJWK)).payload))
    expect(new Set(payloads.map((payload) => payload.jti)).size).toBe(20)
    expect(sent.every((headers) => !headers.has('authorization'))).toBe(true)
    expect(payloads[0]).toMatchObject({ htm: 'POST', htu: 'https://as.example.com/revoke' })
    expect(payloads[0]!.ath).toBeUndefined()
    expect(payloads[0]!.nonce).toBeUndefined()
  })
})

describe('dpopAlgFor', () => {
  const issuer = 'https://as.example.com'
  it('uses DPoP with auto only where the server lists an algorithm the relay makes keys for, never with off', () => {
    expect(dpopAlgFor('auto', { issuer, dpop_signing_alg_values_supported: ['EdDSA', 'ES256'] })).toBe('ES256')
    expect(dpopAlgFor('auto', { issuer, dpop_signing_alg_values_supported: ['EdDSA'] })).toBeUndefined()
    expect(dpopAlgFor('auto', { issuer })).toBeUndefined()
    expect(dpopAlgFor('off', { issuer, dpop_signing_alg_values_supported: ['ES256'] })).toBeUndefined()
  })

  it('refuses a server without DPoP when it is required, naming the setting', () => {
    expect(() => dpopAlgFor('required', { issuer })).toThrow(DiscoveryError)
    expect(() => dpopAlgFor('required', { issuer, dpop_signing_alg_values_supported: [] })).toThrow('"dpop": "required"')
    expect(dpopAlgFor('required', { issuer, dpop_signing_alg_values_supported: ['ES384'] })).toBe('ES384')
  })
})

describe('createDpopKeyring', () => {
  it('knows the keys of DPoP-bound tokens only, and forgets the least recently used past its bound', async () => {
    const keyring = createDpopKeyring(2)
    const key = await newDpopKey('ES256')
    keyring.remember({ accessToken: 'bearer', dpopKey: key })
    keyring.remember({ accessToken: 'a', tokenType: 'DPoP', dpopKey: key })
    keyring.remember({ accessToken: 'b', tokenType: 'DPoP', dpopKey: key })
    expect(keyring.sessionFor('bearer')).toBeUndefined()
    expect(keyring.sessionFor('a')).toBeDefined()
    keyring.remember({ accessToken: 'c', tokenType: 'DPoP', dpopKey: key })
    expect(keyring.sessionFor('b')).toBeUndefined()
    expect(await keyring.sessionFor('a')).toBe(await keyring.sessionFor('a'))
    expect(keyring.sessionFor('c')).toBeDefined()
  })
})
