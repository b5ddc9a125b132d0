import { createHash, randomInt, timingSafeEqual } from 'node:crypto'
import { tokenKey, type TokenOwner } from '../store/tokens.ts'

/**
 * The one-time code of SIGN_IN_CONFIRMATION=code (DESIGN.md §6): ten Crockford base32 characters
 * (50 bits), shown as `XXXXX-XXXXX`. Crockford's alphabet has no I, L, O or U, and reading is
 * forgiving (case, spaces and dashes ignored; O read as 0, I and L as 1), so a code read aloud or
 * typed by hand still matches. 50 bits with 5 tries: a guess succeeds with odds of 5 in 2^50.
 */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const LENGTH = 10

export function newConfirmationCode(): string {
  let code = ''
  for (let index = 0; index < LENGTH; index++) code += ALPHABET[randomInt(ALPHABET.length)]
  return `${code.slice(0, 5)}-${code.slice(5)}`
}

function normalize(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1')
}

/**
 * What is stored instead of the code: SHA-256 over the owner and the normalized code, so a hash
 * copied to another owner's record does not match there. The record is sealed besides.
 */
export function hashConfirmationCode(owner: TokenOwner, code: string): string {
  return createHash('sha256').update(`${tokenKey(owner)}\n${normalize(code)}`).digest('base64url')
}

/** Constant-time comparison of a given code with the stored hash. */
export function matchesConfirmationCode(owner: TokenOwner, code: string, storedHash: string): boolean {
  const given = Buffer.from(hashConfirmationCode(owner, code))
  const stored = Buffer.from(storedHash)
  return given.length === stored.length && timingSafeEqual(given, stored)
}
