// The DPoP proofs the relay makes itself (RFC 9449 §4.2, §7.1): for MCP requests and revocation.
// Checked with jose, as a resource server checks them: the proof's signature by the embedded key,
// its claims against the request, and the key's thumbprint against the token's binding.
import { createHash } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose'
import { describe, expect, it } from 'vitest'
import { createDpopKeyring, createDpopSigner, dpopAlgFor, dpopHeaders, newDpopKey } from '../../src/oauth/dpop.ts'
import { DiscoveryError } from '../../src/oauth/discovery.ts'

describe('dpopHeaders', () => {
  it('presents the token with the DPoP scheme and a proof for exactly this request', async () => {
    const key = await newDpopKey('ES256')
    const signer = await createDpopSigner(key)
    const url = new URL('https://mcp.example.com/mcp?session=1#x')
    const headers = await dpopHeaders(signer, { method: 'post', url, accessToken: 'the-token', nonce: 'n-1' })
    expect(headers.authorization).toBe('DPoP the-token')

    const { payload, protectedHeader } = await jwtVerify(headers.dpop, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256'] })
    expect(protectedHeader.alg).toBe('ES256')
    // The header carries the public key only.
    expect(Object.keys(protectedHeader.jwk!).sort()).toEqual(['crv', 'kty', 'x', 'y'])
    expect(await calculateJwkThumbprint(protectedHeader.jwk!)).toBe(await calculateJwkThumbprint({ kty: key.jwk.kty!, crv: key.jwk.crv!, x: key.jwk.x!, y: key.jwk.y! }))
    expect(payload).toMatchObject({
      htm: 'POST',
      htu: 'https://mcp.example.com/mcp',
      ath: createHash('sha256').update('the-token').digest('base64url'),
      nonce: 'n-1',
    })
    expect(Math.abs(payload.iat! - Date.now() / 1000)).toBeLessThan(5)
    expect(payload.jti).toMatch(/^[A-Za-z0-9_-]{22,}$/)
  })

  it('makes a fresh jti for every proof, and no ath or Authorization without a token', async () => {
    const signer = await createDpopSigner(await newDpopKey('ES256'))
    const url = new URL('https://as.example.com/revoke')
    const proofs = await Promise.all(Array.from({ length: 20 }, () => dpopHeaders(signer, { method: 'POST', url })))
    const jtis = await Promise.all(proofs.map(async (headers) => (await jwtVerify(headers.dpop, EmbeddedJWK)).payload.jti))
    expect(new Set(jtis).size).toBe(20)
    expect(proofs[0]!.authorization).toBeUndefined()
    const { payload } = await jwtVerify(proofs[0]!.dpop, EmbeddedJWK)
    expect(payload.ath).toBeUndefined()
    expect(payload.nonce).toBeUndefined()
  })

  it('signs with RSA keys too, as the server lists them', async () => {
    expect(dpopAlgFor('auto', { issuer: 'https://as.example.com', dpop_signing_alg_values_supported: ['RS256'] })).toBe('RS256')
    const signer = await createDpopSigner(await newDpopKey('PS256'))
    const { dpop } = await dpopHeaders(signer, { method: 'GET', url: new URL('https://mcp.example.com/mcp'), accessToken: 't' })
    expect(decodeProtectedHeader(dpop).alg).toBe('PS256')
    expect((await jwtVerify(dpop, EmbeddedJWK)).payload.htm).toBe('GET')
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
    expect(keyring.signerFor('bearer')).toBeUndefined()
    expect(keyring.signerFor('a')).toBeDefined()
    keyring.remember({ accessToken: 'c', tokenType: 'DPoP', dpopKey: key })
    expect(keyring.signerFor('b')).toBeUndefined()
    expect(await keyring.signerFor('a')).toBe(await keyring.signerFor('a'))
    expect(keyring.signerFor('c')).toBeDefined()
  })
})
