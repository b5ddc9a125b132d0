import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { keyFilePathBeside, loadOrCreateKeyFile } from '../../src/store/key-file.ts'

const run = promisify(execFile)
const dirs: string[] = []
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'relay-key-file-'))
  dirs.push(dir)
  return dir
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

describe('loadOrCreateKeyFile', () => {
  it('creates a 32-byte key with mode 0600, in a new directory, and returns the same key later', () => {
    const path = join(tempDir(), 'data', 'relay.key')
    const [created] = loadOrCreateKeyFile(path)
    expect(created).toHaveLength(32)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const [again] = loadOrCreateKeyFile(path)
    expect(again!.equals(created!)).toBe(true)
    expect(readdirSync(join(path, '..'))).toEqual(['relay.key']) // no temporary files left behind
  })

  it('gives processes that start at once one and the same key', async () => {
    const path = join(tempDir(), 'relay.key')
    const moduleUrl = new URL('../../src/store/key-file.ts', import.meta.url).href
    const script = `import { loadOrCreateKeyFile } from ${JSON.stringify(moduleUrl)}
      process.stdout.write(loadOrCreateKeyFile(${JSON.stringify(path)})[0].toString('base64'))`
    const outputs = await Promise.all(
      Array.from({ length: 6 }, () => run(process.execPath, ['--input-type=module', '-e', script])),
    )
    const keys = new Set(outputs.map((output) => output.stdout))
    expect(keys.size).toBe(1)
    expect(loadOrCreateKeyFile(path)[0]!.toString('base64')).toBe([...keys][0])
  })

  it('reads a rotated comma list from the file', () => {
    const path = join(tempDir(), 'relay.key')
    const a = Buffer.alloc(32, 1).toString('base64')
    const b = Buffer.alloc(32, 2).toString('base64')
    writeFileSync(path, `${a},${b}\n`, { mode: 0o600 })
    expect(loadOrCreateKeyFile(path).map((key) => key[0])).toEqual([1, 2])
  })

  it('names the file, not its content, when the content is bad', () => {
    const path = join(tempDir(), 'relay.key')
    writeFileSync(path, 'c2hvcnQ=\n', { mode: 0o600 })
    expect(() => loadOrCreateKeyFile(path)).toThrow(`the key file ${path} decodes to 5 bytes`)
  })

  it('lives beside the database', () => {
    expect(keyFilePathBeside('/srv/relay/data/relay.sqlite')).toBe('/srv/relay/data/relay.key')
  })
})
