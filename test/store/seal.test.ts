import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createSealer, parseEncryptionKeys } from '../../src/store/seal.ts'

const key1 = randomBytes(32)
const key2 = randomBytes(32)
const token = { access_token: 'at-123', refresh_token: 'rt-456', expires_at: 1_900_000_000, scopes: ['read'] }

/** Replaces one character of part `index` of a sealed value with another valid base64url character. */
function tamper(sealed: string, index: number): string {
  const parts = sealed.split('.')
  const part = parts[index]!
  parts[index] = (part[0] === 'A' ? 'B' : 'A') + part.slice(1)
  return parts.join('.')
}

describe('createSealer', () => {
  it('round-trips JSON values in a versioned, fingerprinted format', () => {
    const sealer = createSealer([key1])
    const sealed = sealer.seal(token)
    const fingerprint = createHash('sha256').update(key1).digest().subarray(0, 8).toString('hex')
    expect(sealed).toMatch(new RegExp(`^v1\\.${fingerprint}\\.[A-Za-z0-9_-]{16}\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{22}$`))
    expect(sealed).not.toContain('at-123')
    expect(sealer.open(sealed)).toEqual({ value: token, sealedWithOldKey: false })
    for (const value of ['text', 0, null, [1, 'two'], { nested: { deep: true } }]) {
      expect(sealer.open(sealer.seal(value))?.value).toEqual(value)
    }
  })

  it('uses a fresh IV each time', () => {
    const sealer = createSealer([key1])
    expect(sealer.seal(token)).not.toBe(sealer.seal(token))
  })

  it('refuses undefined, which has no JSON form', () => {
    expect(() => createSealer([key1]).seal(undefined)).toThrow(TypeError)
  })

  it('opens values sealed with an older key and says so; seals with the first key', () => {
    const before = createSealer([key1])
    const after = createSealer([key2, key1])
    const old = before.seal(token)
    expect(after.open(old)).toEqual({ value: token, sealedWithOldKey: true })
    const fresh = after.seal(token)
    expect(after.open(fresh)).toEqual({ value: token, sealedWithOldKey: false })
    expect(before.open(fresh)).toBeUndefined()
    expect(createSealer([key2]).open(fresh)?.value).toEqual(token)
  })

  it('answers undefined, never throws, for tampered, foreign, and garbage values', () => {
    const sealer = createSealer([key1])
    const sealed = sealer.seal(token)
    for (const index of [1, 2, 3, 4]) expect(sealer.open(tamper(sealed, index))).toBeUndefined()
    expect(createSealer([key2]).open(sealed)).toBeUndefined()
    const garbage = ['', 'v1', 'v1....', 'v2' + sealed.slice(2), `${sealed}.extra`, sealed.slice(0, -3), 'not sealed', '{"value":1}']
    for (const value of garbage) expect(sealer.open(value)).toBeUndefined()
    expect(sealer.open(42 as unknown as string)).toBeUndefined()
    expect(sealer.open(undefined as unknown as string)).toBeUndefined()
  })

  it('binds the context: a value sealed for one key does not open for another', () => {
    const sealer = createSealer([key1])
    const sealed = sealer.seal(token, 'tenant:alice:server')
    expect(sealer.open(sealed, 'tenant:alice:server')?.value).toEqual(token)
    expect(sealer.open(sealed, 'tenant:mallory:server')).toBeUndefined()
    expect(sealer.open(sealed)).toBeUndefined()
  })

  it('needs 32-byte keys', () => {
    expect(() => createSealer([])).toThrow()
    expect(() => createSealer([randomBytes(16)])).toThrow(/32 bytes/)
  })
})

describe('parseEncryptionKeys', () => {
  it('reads standard and url-safe base64, and comma lists with spaces', () => {
    const standard = Buffer.from(Array.from({ length: 32 }, (_, i) => 250 - i)) // has + and / in base64
    expect(standard.toString('base64')).toMatch(/[+/]/)
    const keys = parseEncryptionKeys(` ${standard.toString('base64')} , ${key2.toString('base64url')}`)
    expect(keys).toHaveLength(2)
    expect(keys[0]!.equals(standard)).toBe(true)
    expect(keys[1]!.equals(key2)).toBe(true)
    expect(parseEncryptionKeys(standard.toString('base64url'))[0]!.equals(standard)).toBe(true)
  })

  it('names the variable and the entry, never the key', () => {
    const short = randomBytes(16).toString('base64')
    const good = key1.toString('base64')
    expect(() => parseEncryptionKeys(short)).toThrow(/^RELAY_ENCRYPTION_KEY decodes to 16 bytes/)
    expect(() => parseEncryptionKeys(`${good},${short}`)).toThrow(/^RELAY_ENCRYPTION_KEY entry 2 of 2 decodes to 16 bytes/)
    expect(() => parseEncryptionKeys(`${good},not base64!`)).toThrow(/^RELAY_ENCRYPTION_KEY entry 2 of 2 is not base64$/)
    expect(() => parseEncryptionKeys('')).toThrow(/^RELAY_ENCRYPTION_KEY is empty$/)
    expect(() => parseEncryptionKeys(`${good},`)).toThrow(/entry 2 of 2/)
    for (const bad of [short, `${good},${short}`, 'not base64!']) {
      try {
        parseEncryptionKeys(bad)
      } catch (error) {
        expect((error as Error).message).not.toContain(short)
        expect((error as Error).message).not.toContain(good)
      }
    }
  })
})
