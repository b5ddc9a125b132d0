import * as vitest from 'vitest'
import { afterAll } from 'vitest'
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite'
import Keyv from 'keyv'
import { createPostgresBackend } from '../../src/store/postgres-store.ts'
import { silentLogger } from '../../src/store/store-logger.ts'
import { POSTGRES_URL, uniquePrefix } from './backends.ts'

// The Keyv adapter contract, against @keyv/postgres as patched in postgres-store.ts, in a table of its own.
const table = `keyv_suite_${uniquePrefix().replaceAll('-', '_')}`
const backend = createPostgresBackend(POSTGRES_URL, silentLogger, table)

afterAll(async () => {
  await backend.query(`DROP TABLE IF EXISTS ${table}`)
  await backend.close()
})

keyvTestSuite(vitest, Keyv, backend.createAdapter)
keyvIteratorTests(vitest, Keyv, backend.createAdapter)
