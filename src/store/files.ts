import { createHash, randomBytes } from 'node:crypto'
import type { FileBudget } from './file-budget.ts'
import type { SealedMap } from './sealed-map.ts'

/** How long a kept file can be fetched (DESIGN.md §4). */
export const FILE_TTL_MS = 10 * 60 * 1000

/** 32 random bytes, base64url: 256 bits, far beyond guessing. */
const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/

export interface KeptFile {
  mimeType: string
  bytes: Buffer
}

/** As stored: the bytes as base64 (sealed values are JSON), and an expiry on the relay's clock. */
export interface StoredFile {
  mimeType: string
  data: string
  expiresAt: number
}

export interface FileStore {
  /**
   * Keeps `data` (base64 of `bytes` decoded bytes) for FILE_TTL_MS if it fits in what `tenant` may
   * keep (FILES_MAX_MB_PER_TENANT): the id that fetches it, or undefined when it does not fit.
   */
  keep(tenant: string, file: { mimeType: string; data: string; bytes: number }): Promise<string | undefined>
  /** The file, or undefined for an unknown, malformed or expired id. */
  read(id: string): Promise<KeptFile | undefined>
}

/**
 * Binary tool content kept aside for `GET /files/<id>`. The id is a capability (whoever holds
 * the link gets the bytes), so it is stored only as its SHA-256: the store, its backups and its
 * operator see no usable link, and the bytes are sealed like every other value that may be
 * private. Expiry is checked on the relay's clock as well as left to the store's TTL.
 *
 * Each tenant keeps at most `maxBytesPerTenant` decoded bytes at a time (DESIGN.md §3, §6): without
 * a bound, one chat user looping an image tool fills Redis or the disk. A file is counted from
 * before it is written until it expires, on every replica (file-budget.ts); if its write then
 * fails, it stays counted until then (the error reaches the caller; the budget errs on the safe side).
 */
export function createFileStore(deps: { map: SealedMap<StoredFile>; budget: FileBudget; maxBytesPerTenant: number; now: () => number }): FileStore {
  return {
    async keep(tenant, file) {
      const now = deps.now()
      const expiresAt = now + FILE_TTL_MS
      if (!(await deps.budget.reserve(tenant, file.bytes, { limitBytes: deps.maxBytesPerTenant, now, expiresAt }))) return undefined
      const id = randomBytes(32).toString('base64url')
      await deps.map.set(storageKey(id), { mimeType: file.mimeType, data: file.data, expiresAt }, FILE_TTL_MS)
      return id
    },
    async read(id) {
      if (!ID_PATTERN.test(id)) return undefined
      const stored = await deps.map.get(storageKey(id))
      if (!stored || deps.now() >= stored.expiresAt) return undefined
      return { mimeType: stored.mimeType, bytes: Buffer.from(stored.data, 'base64') }
    },
  }
}

function storageKey(id: string): string {
  return createHash('sha256').update(id).digest('hex')
}
