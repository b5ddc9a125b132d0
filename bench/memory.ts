// npm run bench:memory: what users of a 2026-07-28 server cost the relay's memory (DESIGN.md §5:
// no per-user session, client or connection, so 10,000 users cost no more than 10). The relay runs
// as `npm start` runs it, in its own process, with the SQLite store; the upstream is the bench's
// 2026-07-28 peer (bench/modern-upstream.ts), and every user has a token in the relay's store.
//
// A first burst of BENCH_MEMORY_USERS new users, one call each, sizes the relay's heap; then
// BENCH_MEMORY_STEPS further bursts of as many new users. After each burst the relay idles
// BENCH_SETTLE_SECONDS (RSS sampled each second) before its memory is read: the growth per step
// is what those users left behind. BENCH_MEMORY_SERVER picks the upstream: `modern` (tools/list
// with the SDK's default hints, so the relay keeps a list per user; default) or `modern-public`.
// BENCH_HEAP_SNAPSHOTS=DIR writes a heap snapshot of the relay after each settle (a full GC first).
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../test/support/free-port.ts'
import {
  ask,
  callThroughRelay,
  check,
  cpuOf,
  forkChild,
  loadAverage,
  mb,
  measure,
  memoryOf,
  message,
  printMachine,
  relayEnv,
  rssOf,
  seedTokens,
  sleep,
  startRelay,
  stopChildren,
  waitUntilReady,
  type RelayMemory,
} from './harness.ts'

const USERS = Number(process.env.BENCH_MEMORY_USERS ?? 10_000)
const STEPS = Number(process.env.BENCH_MEMORY_STEPS ?? 2)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 30)
const SERVER = (process.env.BENCH_MEMORY_SERVER ?? 'modern') as 'modern' | 'modern-public'
const SNAPSHOTS = process.env.BENCH_HEAP_SNAPSHOTS
/** DESIGN.md §5 via issue 16: each further 10,000 users grow the idle relay's RSS by at most this. */
const TARGET_MB_PER_10K = 25

const workDir = mkdtempSync(join(tmpdir(), 'relay-bench-memory-'))

try {
  await main()
} finally {
  await stopChildren()
  rmSync(workDir, { recursive: true, force: true })
}

interface Step {
  label: string
  users: number
  seconds: number
  relayCpuMsPerCall: number
  upstreamPerCall: Record<string, number>
  memory: RelayMemory
  rss: number
  /** Of the RSS, the anonymous memory (V8's heap, malloc's arenas) rather than mapped files. */
  anonymous: number
  trace: number[]
  poolSessions: number
  storeMb: number
}

async function main(): Promise<void> {
  printMachine(
    `npm run bench:memory\nserver: ${SERVER}; a first burst of ${USERS} users, then ${STEPS} × ${USERS} more, one call each at concurrency ${CONCURRENCY}; ${SETTLE_SECONDS} s idle after each`,
  )
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const upstream = forkChild('bench/modern-upstream.ts', { publicJwk: publicKey.export({ format: 'jwk' }) })
  const { issuer, urls } = await message<{ issuer: string; urls: Record<'modern' | 'modern-public', string> }>(upstream, 'ready')
  const methodsSeen = async () => (await ask<{ counters: Record<string, { byMethod: Record<string, number> }> }>(upstream, 'counters')).counters[SERVER]!.byMethod

  const port = await freePort()
  const logPath = join(workDir, 'relay.log')
  const storePath = join(workDir, 'relay.sqlite')
  const env = {
    ...relayEnv({ port, servers: [{ server_id: SERVER, description: 'Bench upstream, 2026-07-28', mcp_url: urls[SERVER] }], storePath }),
    ...(SNAPSHOTS ? { NODE_OPTIONS: `${process.env.BENCH_RELAY_NODE_OPTIONS ?? ''} --heapsnapshot-signal=SIGUSR2`.trim() } : {}),
  }
  const total = USERS * (STEPS + 1)
  const seeded = await seedTokens({
    env,
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    issuer,
    grants: [{ serverId: SERVER, resource: urls[SERVER], prefix: 'user-', from: 0, to: total }],
  })
  console.log(`${seeded.count} users' tokens written into the relay's store in ${seeded.seconds.toFixed(1)} s\n`)

  // The relay's working directory is where its heap snapshots land.
  const relay = startRelay(env, { workDir: SNAPSHOTS ?? workDir, logPath })
  await waitUntilReady(port, relay, logPath)
  const atStart = await memoryOf(port)
  const anonymousAtStart = anonymousOf(relay)
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })

  const steps: Step[] = []
  for (let step = 0; step <= STEPS; step++) {
    const from = step * USERS
    const label = step === 0 ? `first ${USERS} users (sizes the heap)` : `+${USERS} users (${from + USERS} in all)`
    const cpu = cpuOf(relay)
    const methods = await methodsSeen()
    const started = performance.now()
    await measure(label, CONCURRENCY, USERS, (i) => callThroughRelay(agent, port, `user-${from + i}`, `${SERVER}::echo`, `hello ${i}`))
    const seconds = (performance.now() - started) / 1000
    const relayCpuMsPerCall = ((cpuOf(relay) - cpu) / USERS) * 1000
    const after = await methodsSeen()
    const upstreamPerCall = Object.fromEntries(Object.entries(after).map(([method, n]) => [method, (n - (methods[method] ?? 0)) / USERS]).filter(([, n]) => n !== 0))
    // Idle: the load generator's keep-alive sockets are closed too, as Dify's would be.
    agent.destroy()
    const trace: number[] = []
    for (let second = 0; second < SETTLE_SECONDS; second++) {
      await sleep(1000)
      trace.push(rssOf(relay))
    }
    const memory = await memoryOf(port)
    steps.push({ label, users: USERS, seconds, relayCpuMsPerCall, upstreamPerCall, memory, rss: rssOf(relay), anonymous: anonymousOf(relay), trace, poolSessions: await poolSessions(port), storeMb: storeSize(storePath) })
    const last = steps.at(-1)!
    console.log(
      `${label}: ${seconds.toFixed(1)} s, relay CPU ${last.relayCpuMsPerCall.toFixed(2)} ms/call, upstream per call: ${perMethod(upstreamPerCall)}; ` +
        `RSS after ${SETTLE_SECONDS} s idle ${mb(last.rss)} MB, heap used ${mb(memory.heapUsed)} MB, pool ${last.poolSessions}`,
    )
    if (SNAPSHOTS) await heapSnapshot(relay, port, SNAPSHOTS)
  }

  console.log(`\n| relay, ${SETTLE_SECONDS} s idle after each burst | RSS MB | growth MB | anonymous | V8 heap total | heap used | new space | external | pooled sessions | store file MB | relay CPU ms/call | upstream requests per call |`)
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
  console.log(`| at start | ${mb(atStart.rss)} | | ${mb(anonymousAtStart)} | ${mb(atStart.heapTotal)} | ${mb(atStart.heapUsed)} | ${mb(atStart.newSpace)} | ${mb(atStart.external)} | | | | |`)
  steps.forEach((step, i) => {
    const growth = i === 0 ? '' : mb(step.rss - steps[i - 1]!.rss)
    const m = step.memory
    console.log(
      `| ${step.label} | ${mb(step.rss)} | ${growth} | ${mb(step.anonymous)} | ${mb(m.heapTotal)} | ${mb(m.heapUsed)} | ${mb(m.newSpace)} | ${mb(m.external)} | ${step.poolSessions} | ${step.storeMb.toFixed(1)} | ${step.relayCpuMsPerCall.toFixed(2)} | ${perMethod(step.upstreamPerCall)} |`,
    )
  })
  for (const step of steps) console.log(`RSS each second after "${step.label}", MB: ${step.trace.map((rss) => Math.round(rss / 1024 / 1024)).join(' ')}`)

  console.log(`\nload average at the end: ${loadAverage()}`)
  console.log('\n| target | measured | goal | met |\n| --- | --- | --- | --- |')
  steps.forEach((step, i) => {
    if (i === 0) return
    const growthMb = ((step.rss - steps[i - 1]!.rss) / 1024 / 1024) * (10_000 / USERS)
    console.log(check(`RSS growth per 10,000 further users, step ${i} (MB, ${SETTLE_SECONDS} s idle)`, growthMb, `≤ ${TARGET_MB_PER_10K}`, growthMb <= TARGET_MB_PER_10K))
  })
}

/** The relay's own count of pooled upstream clients (its /metrics gauge). */
async function poolSessions(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  return Number(/^mcp_relay_pool_sessions (\S+)$/m.exec(text)?.[1] ?? NaN)
}

/** Anonymous resident memory of a process, from /proc (V8's heap and malloc's arenas; not the mapped binary and libraries). */
function anonymousOf(child: ReturnType<typeof startRelay>): number {
  return Number(/^Anonymous:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/smaps_rollup`, 'utf8'))![1]) * 1024
}

/** The SQLite database with its write-ahead log, in MB. */
function storeSize(path: string): number {
  const size = (file: string) => {
    try {
      return statSync(file).size
    } catch {
      return 0
    }
  }
  return (size(path) + size(`${path}-wal`)) / 1024 / 1024
}

/** Asks the relay for a heap snapshot (--heapsnapshot-signal) and waits until its file is complete. */
async function heapSnapshot(relay: ReturnType<typeof startRelay>, port: number, dir: string): Promise<void> {
  const snapshots = () => readdirSync(dir).filter((name) => name.endsWith('.heapsnapshot'))
  const before = new Set(snapshots())
  relay.kill('SIGUSR2')
  const deadline = Date.now() + 120_000
  for (;;) {
    const written = snapshots().find((name) => !before.has(name))
    // V8 writes the file while the process is paused: the relay answers again once it is done.
    if (written && (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false))) {
      console.log(`heap snapshot: ${join(dir, written)}`)
      return
    }
    if (Date.now() > deadline) throw new Error('no heap snapshot within 120 s')
    await sleep(500)
  }
}

function perMethod(methods: Record<string, number>): string {
  return Object.entries(methods).map(([method, n]) => `${method} ${n.toFixed(2)}`).join(', ') || 'none'
}
