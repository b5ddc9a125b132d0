import { randomBytes } from 'node:crypto'
import { linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { parseEncryptionKeys } from './seal.ts'

/** Where the generated key lives for an SQLite store: beside the database file. */
export function keyFilePathBeside(databasePath: string): string {
  return join(dirname(databasePath), 'relay.key')
}

/**
 * The encryption keys from `path`, creating the file with one fresh key (mode 0600) on first use.
 * Used when RELAY_ENCRYPTION_KEY is unset and the store is an SQLite file. The file holds the same
 * format as the variable (a comma list rotates keys).
 *
 * Two processes starting at once must end up with one key: the new key is written to a private
 * temporary file and hard-linked into place, which fails with EEXIST if another process won, so
 * nobody ever reads a half-written key file.
 */
export function loadOrCreateKeyFile(path: string): Buffer[] {
  const source = `the key file ${path}`
  try {
    return parseEncryptionKeys(readFileSync(path, 'utf8'), source)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  const fd = openSync(temporary, 'wx', 0o600)
  try {
    writeSync(fd, `${randomBytes(32).toString('base64')}\n`)
  } finally {
    closeSync(fd)
  }
  try {
    linkSync(temporary, path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  } finally {
    unlinkSync(temporary)
  }
  return parseEncryptionKeys(readFileSync(path, 'utf8'), source)
}
