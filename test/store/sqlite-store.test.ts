import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as vitest from 'vitest'
import { afterAll } from 'vitest'
import keyvTestSuite, { keyvIteratorTests } from '@keyv/test-suite'
import Keyv from 'keyv'
import { openSqliteDatabase, SqliteStore } from '../../src/store/sqlite-store.ts'

const dir = mkdtempSync(join(tmpdir(), 'relay-sqlite-store-'))
const path = join(dir, 'suite.sqlite')
const db = openSqliteDatabase(path)
const store = () => new SqliteStore(db, `sqlite://${path}`)

afterAll(() => {
  db.close()
  rmSync(dir, { recursive: true, force: true })
})

keyvTestSuite(vitest, Keyv, store)
keyvIteratorTests(vitest, Keyv, store)
