import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'

export interface Sealer {
  /** Encrypts a JSON value. `context` (e.g. the storage key) is bound as associated data. */
  seal(value: unknown, context?: string): string
  /** The value, or undefined for anything no key opens (tampered, unknown key, garbage, wrong context). */
  open(sealed: string, context?: string): { value: unknown; sealedWithOldKey: boolean } | undefined
}

const VERSION = 'v1'
const KEY_BYTES = 32
const IV_BYTES = 12 // NIST SP 800-38D §8.2: 96-bit random IVs for GCM
const TAG_BYTES = 16

/** A short, non-secret fingerprint naming which key sealed a value, so open tries that key first. */
function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(key).digest().subarray(0, 8).toString('hex')
}

function associatedData(header: string, context: string | undefined): Buffer {
  return Buffer.from(`${header}\n${context ?? ''}`, 'utf8')
}

/**
 * AES-256-GCM sealing with rotation: keys[0] seals, every key opens. The sealed form is
 * `v1.<keyId>.<iv>.<ciphertext>.<tag>` (base64url), so a value says which key and format it needs.
 */
export function createSealer(keys: Buffer[]): Sealer {
  if (keys.length === 0) throw new Error('createSealer needs at least one key')
  for (const key of keys) {
    if (key.length !== KEY_BYTES) throw new Error(`createSealer keys must be ${KEY_BYTES} bytes`)
  }
  const ring = keys.map((key, index) => ({ key, index, id: keyIdOf(key) }))
  const sealing = ring[0]!

  function seal(value: unknown, context?: string): string {
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError('Only JSON values can be sealed')
    const header = `${VERSION}.${sealing.id}`
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', sealing.key, iv)
    cipher.setAAD(associatedData(header, context))
    const ciphertext = Buffer.concat([cipher.update(json, 'utf8'), cipher.final()])
    const tag = cipher.getAuthTag()
    return [header, iv.toString('base64url'), ciphertext.toString('base64url'), tag.toString('base64url')].join('.')
  }

  function open(sealed: string, context?: string) {
    if (typeof sealed !== 'string') return undefined
    const parts = sealed.split('.')
    if (parts.length !== 5 || parts[0] !== VERSION) return undefined
    const [, keyId, ivText, ciphertextText, tagText] = parts as [string, string, string, string, string]
    const iv = Buffer.from(ivText, 'base64url')
    const tag = Buffer.from(tagText, 'base64url')
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined
    const ciphertext = Buffer.from(ciphertextText, 'base64url')
    const aad = associatedData(`${VERSION}.${keyId}`, context)
    // The named key first; the others too, in case two keys share a fingerprint prefix.
    const candidates = [...ring.filter((k) => k.id === keyId), ...ring.filter((k) => k.id !== keyId)]
    for (const candidate of candidates) {
      let plaintext: string
      try {
        const decipher = createDecipheriv('aes-256-gcm', candidate.key, iv, { authTagLength: TAG_BYTES })
        decipher.setAAD(aad)
        decipher.setAuthTag(tag)
        plaintext = Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8')
      } catch {
        continue // authentication failed with this key: try the next, then report "unreadable"
      }
      try {
        return { value: JSON.parse(plaintext) as unknown, sealedWithOldKey: candidate.index !== 0 }
      } catch {
        return undefined // authentic but not JSON: not something this sealer wrote
      }
    }
    return undefined
  }

  return { seal, open }
}

const BASE64 = /^(?:[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2})$/

/**
 * Parses RELAY_ENCRYPTION_KEY: a comma list of base64 (standard or url-safe) 32-byte keys, the
 * first sealing. Errors name the variable (or `source`) and the entry, never the key itself.
 */
export function parseEncryptionKeys(csv: string, source = 'RELAY_ENCRYPTION_KEY'): Buffer[] {
  const entries = csv.split(',').map((entry) => entry.trim())
  if (entries.every((entry) => entry === '')) throw new Error(`${source} is empty`)
  return entries.map((entry, index) => {
    const where = entries.length > 1 ? `${source} entry ${index + 1} of ${entries.length}` : source
    if (!BASE64.test(entry) || entry.replace(/=+$/, '').length % 4 === 1) {
      throw new Error(`${where} is not base64`)
    }
    const key = Buffer.from(entry, 'base64')
    if (key.length !== KEY_BYTES) {
      throw new Error(`${where} decodes to ${key.length} bytes; it must be base64 of exactly ${KEY_BYTES} bytes`)
    }
    return key
  })
}
