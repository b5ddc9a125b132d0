// npm run bench: the relay's warm path against the floor (a direct, pooled SDK client) and the
// plugin's design (a new client per call), all on loopback. Each server runs in its own process:
// the SDK upstream, the relay (as `npm start` runs it) and, for (E), a bare Fastify route.
//
//   (A) call-tool through the relay          (B) the same tool on one pooled SDK Client (floor)
//   (C) a new SDK Client per call            (D) list-tools from the relay's cache
//   (E) a bare Fastify route answering D's JSON
//   (F) a cold first call: each call a new user, so the relay opens a session for it
//
// Then A and B at concurrency 1 (the relay's added latency), and the relay's RSS after 1,000
// users have one pooled session each. Tunable: BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_SESSIONS.
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { freePort } from '../test/support/free-port.ts'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000)
/** How long the relay holding the sessions stays idle before its RSS is read. */
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 30)
const WARMUP = Math.min(500, REQUESTS)
const SERIAL = Math.min(1000, REQUESTS)
/** New users for the cold first call (F); each keeps a pooled session afterwards. */
const COLD = Math.min(200, REQUESTS)
/** Which runs to make, e.g. BENCH_RUNS=A,D for profiling (A B C D E A1 B1 F RSS); default all. */
const ONLY = process.env.BENCH_RUNS ? new Set(process.env.BENCH_RUNS.split(',').map((run) => run.trim())) : undefined
const API_KEY = 'bench-key-0123456789abcdef'
const NODE_FLAGS = ['--experimental-strip-types', '--disable-warning=ExperimentalWarning']
/**
 * The relay's own flags, as `npm start` and the Docker image set them: a young generation of
 * 8 MiB semi-spaces (V8 sizes it from the host's memory, 64 MiB here) caps the peak while 1,000
 * sessions open and lets RSS settle, at no CPU cost measured (docs/benchmarks.md).
 */
const RELAY_FLAGS = [...NODE_FLAGS, '--max-semi-space-size=8']
const root = new URL('..', import.meta.url).pathname

interface Figures {
  label: string
  concurrency: number
  requests: number
  p50: number
  p99: number
  rps: number
  /** CPU time (user + system) per request, in µs: of this process (the client), of the process serving it, of the upstream. */
  clientCpuUs: number
  serverCpuUs: number | undefined
  upstreamCpuUs: number
}

const workDir = mkdtempSync(join(tmpdir(), 'relay-bench-'))
const children: ChildProcess[] = []

try {
  await main()
} finally {
  await stopChildren()
  rmSync(workDir, { recursive: true, force: true })
}

async function main(): Promise<void> {
  printMachine()
  const upstream = forkChild('bench/upstream.ts')
  const { url: upstreamUrl } = await message<{ url: string }>(upstream, 'ready')

  const relayPort = await freePort()
  const relayLog = join(workDir, 'relay.log')
  const relay = startRelay(relayPort, upstreamUrl, relayLog)
  await waitUntilReady(relayPort, relay, relayLog)

  const memoryAtStart = await memoryOf(relayPort)
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const post = (port: number, path: string, body: unknown) => postJson(agent, port, path, body)
  const callTool = async (userId: string, text: string, port = relayPort) => {
    const answer = await post(port, '/tools/call-tool', { user_id: userId, tool_ref: 'echo::echo', input: { text } })
    if (answer.status !== 200 || !answer.text.startsWith('{"ok":true')) throw new Error(`call-tool answered ${answer.status}: ${answer.text}`)
  }
  const listTools = async () => {
    const answer = await post(relayPort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
    if (answer.status !== 200 || !answer.text.includes('"source":"cache"')) throw new Error(`list-tools answered ${answer.status}: ${answer.text}`)
    return answer.text
  }

  const direct = new Client({ name: 'bench-direct', version: '1.0.0' })
  await direct.connect(new StreamableHTTPClientTransport(new URL(upstreamUrl)))
  const directCall = async (text: string) => {
    const result = await direct.callTool({ name: 'echo', arguments: { text } })
    if (result.isError) throw new Error(`direct call failed: ${JSON.stringify(result)}`)
  }
  // The plugin's design: a new client (and session) per call, ended as its context manager does.
  const freshCall = async (text: string) => {
    const client = new Client({ name: 'bench-per-call', version: '1.0.0' })
    const transport = new StreamableHTTPClientTransport(new URL(upstreamUrl))
    await client.connect(transport)
    await client.callTool({ name: 'echo', arguments: { text } })
    await transport.terminateSession()
    await client.close()
  }

  // Warm-up: JIT, keep-alive sockets, the pooled session, the cached list (an open server's list
  // is cached once the relay knows it is open: the second list-tools fills the cache).
  await post(relayPort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
  await post(relayPort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
  const listJson = await listTools()
  const bare = forkChild('bench/bare-route.ts')
  bare.send({ body: JSON.parse(listJson) })
  const { port: barePort } = await message<{ port: number }>(bare, 'ready')
  const bareList = async () => {
    const answer = await post(barePort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
    if (answer.status !== 200 || answer.text.length !== listJson.length) throw new Error(`bare route answered ${answer.status}`)
  }
  await measure('warm-up', CONCURRENCY, WARMUP, (i) => callTool('bench', `w${i}`))
  await measure('warm-up', CONCURRENCY, WARMUP, (i) => directCall(`w${i}`))
  await measure('warm-up', CONCURRENCY, Math.min(WARMUP, 100), (i) => freshCall(`w${i}`))
  await measure('warm-up', CONCURRENCY, WARMUP, () => listTools())
  await measure('warm-up', CONCURRENCY, WARMUP, () => bareList())
  const initializeBefore = (await counters(upstream)).initialize

  type Run = [key: string, label: string, concurrency: number, requests: number, server: ChildProcess | undefined, task: (i: number) => Promise<unknown>]
  const runs: Run[] = [
    ['A', 'A  call-tool via relay', CONCURRENCY, REQUESTS, relay, (i) => callTool('bench', `a${i}`)],
    ['B', 'B  pooled SDK client (floor)', CONCURRENCY, REQUESTS, undefined, (i) => directCall(`b${i}`)],
    ['C', 'C  new SDK client per call', CONCURRENCY, REQUESTS, undefined, (i) => freshCall(`c${i}`)],
    ['D', 'D  list-tools (cache)', CONCURRENCY, REQUESTS, relay, () => listTools()],
    ['E', 'E  bare Fastify route', CONCURRENCY, REQUESTS, bare, () => bareList()],
    ['A1', 'A1 call-tool via relay', 1, SERIAL, relay, (i) => callTool('bench', `s${i}`)],
    ['B1', 'B1 pooled SDK client', 1, SERIAL, undefined, (i) => directCall(`s${i}`)],
    // Each a new user on the server the relay already knows is open: a session is opened first.
    ['F', 'F  cold first call via relay', 1, COLD, relay, (i) => callTool(`cold-${i}`, `f${i}`)],
  ]
  const results = new Map<string, Figures>()
  /** HTTP requests the upstream received per request of a run (its sessions' GET streams included). */
  const upstreamRequests = new Map<string, number>()
  for (const [key, label, concurrency, requests, server, task] of runs) {
    if (ONLY && !ONLY.has(key)) continue
    const serverCpu = server && cpuOf(server)
    const upstreamCpu = cpuOf(upstream)
    const requestsBefore = (await counters(upstream)).requests
    const figures = await measure(label, concurrency, requests, task)
    figures.serverCpuUs = server && ((cpuOf(server) - serverCpu!) / requests) * 1e6
    figures.upstreamCpuUs = ((cpuOf(upstream) - upstreamCpu) / requests) * 1e6
    upstreamRequests.set(key, ((await counters(upstream)).requests - requestsBefore) / requests)
    results.set(key, figures)
  }
  const afterRuns = await counters(upstream)
  // End the direct session upstream too, so the session count below is the relay's alone.
  await (direct.transport as StreamableHTTPClientTransport).terminateSession()
  await direct.close()
  printTable([...results.values()])

  const targets: string[] = []
  const { A: a, B: b, C: c, D: d, E: e, A1: a1, B1: b1, F: f } = Object.fromEntries(results)
  if (a && b) targets.push(check('A p50 / B p50', a.p50 / b.p50, '≤ 1.5', a.p50 / b.p50 <= 1.5))
  if (a && c) targets.push(check('A throughput / C throughput', a.rps / c.rps, '≥ 4', a.rps >= 4 * c.rps))
  if (d && e) targets.push(check('D throughput / E throughput', d.rps / e.rps, '≥ 0.7', d.rps >= 0.7 * e.rps))
  if (a1 && b1) console.log(`\nRelay's added latency at concurrency 1 (A1 p50 − B1 p50): ${(a1.p50 - b1.p50).toFixed(3)} ms`)
  if (a1 && f) {
    console.log(`Cold first call (F) against a warm one (A1): p50 ${f.p50.toFixed(3)} − ${a1.p50.toFixed(3)} = ${(f.p50 - a1.p50).toFixed(3)} ms; ` +
      `upstream HTTP requests per call ${upstreamRequests.get('F')!.toFixed(2)} against ${upstreamRequests.get('A1')!.toFixed(2)}`)
  }
  // C and F open one session per call; A and B none: the relay's session stays pooled throughout.
  console.log(`Sessions the relay re-initialized during the runs (should be 0): ${afterRuns.initialize - initializeBefore - (c?.requests ?? 0) - (f?.requests ?? 0)}`)

  if (!ONLY || ONLY.has('RSS')) {
    // A fresh relay, so the figure is what 1,000 pooled sessions cost and not what the runs above
    // left in V8's heap (it does not hand memory back promptly).
    const memoryAfterRuns = await memoryOf(relayPort)
    await stopChild(relay)
    const freshPort = await freePort()
    const fresh = startRelay(freshPort, upstreamUrl, relayLog, 'fresh')
    await waitUntilReady(freshPort, fresh, relayLog)
    const memoryFresh = await memoryOf(freshPort)
    const sessionsStarted = performance.now()
    await measure('sessions', CONCURRENCY, SESSIONS, (i) => callTool(`user-${i}`, `hello ${i}`, freshPort))
    const sessionsSeconds = (performance.now() - sessionsStarted) / 1000
    await new Promise((resolve) => setTimeout(resolve, 500))
    const rssJustAfter = rssOf(fresh)
    const memoryJustAfter = await memoryOf(freshPort)
    // V8 keeps the young generation it grew during the burst, and the garbage it promoted, until
    // its memory reducer runs once allocation has been quiet for a while: sample for
    // SETTLE_SECONDS of idleness to see what holding the sessions costs.
    const trace: number[] = []
    let memorySettled = memoryJustAfter
    for (let second = 0; second < SETTLE_SECONDS; second++) {
      await new Promise((resolve) => setTimeout(resolve, 1000))
      memorySettled = await memoryOf(freshPort)
      trace.push(memorySettled.rss)
    }
    const rssSettled = rssOf(fresh)
    const upstreamSessions = (await counters(upstream)).sessionsOpen
    console.log(`\n${SESSIONS} users' sessions opened in ${sessionsSeconds.toFixed(1)} s on a fresh relay; the upstream holds ${upstreamSessions} sessions`)
    console.log('| relay memory, MB | RSS | V8 heap total | heap used | new space | external |\n| --- | ---: | ---: | ---: | ---: | ---: |')
    const rows = [
      ['relay of the runs, at start', memoryAtStart],
      ['relay of the runs, after them', memoryAfterRuns],
      ['fresh relay, at start', memoryFresh],
      [`fresh relay, ${SESSIONS} sessions, just opened`, memoryJustAfter],
      [`fresh relay, ${SESSIONS} sessions, ${SETTLE_SECONDS} s later`, memorySettled],
    ] as const
    for (const [when, m] of rows) {
      console.log(`| ${when} | ${mb(m.rss)} | ${mb(m.heapTotal)} | ${mb(m.heapUsed)} | ${mb(m.newSpace)} | ${mb(m.external)} |`)
    }
    console.log(`RSS each second after opening, MB: ${trace.map((rss) => Math.round(rss / 1024 / 1024)).join(' ')}`)
    targets.push(check(`RSS with ${SESSIONS} pooled sessions, ${SETTLE_SECONDS} s idle (MB)`, rssSettled / 1024 / 1024, '≤ 200', rssSettled <= 200 * 1024 * 1024))
    targets.push(check(`RSS with ${SESSIONS} pooled sessions, just opened (MB)`, rssJustAfter / 1024 / 1024, '(info)', true))
  }
  console.log(`\nload average at the end: ${loadavg().map((load) => load.toFixed(2)).join(' ')}`)
  console.log('\n| target | measured | goal | met |\n| --- | --- | --- | --- |')
  for (const line of targets) console.log(line)
}

async function measure(label: string, concurrency: number, requests: number, task: (i: number) => Promise<unknown>): Promise<Figures> {
  const latencies = new Float64Array(requests)
  let next = 0
  const started = performance.now()
  const cpu = process.cpuUsage()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < requests; i = next++) {
        const t0 = performance.now()
        await task(i)
        latencies[i] = performance.now() - t0
      }
    }),
  )
  const elapsed = performance.now() - started
  const used = process.cpuUsage(cpu)
  latencies.sort()
  const at = (q: number) => latencies[Math.min(requests - 1, Math.ceil(q * requests) - 1)]!
  return { label, concurrency, requests, p50: at(0.5), p99: at(0.99), rps: (requests / elapsed) * 1000,
    clientCpuUs: (used.user + used.system) / requests, serverCpuUs: undefined, upstreamCpuUs: 0 }
}

function printMachine(): void {
  const free = execFileSync('free', ['-h'], { encoding: 'utf8' }).trim()
  console.log(`# npm run bench   (node ${process.version}, ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores: ${cpus()[0]?.model ?? '?'})`)
  console.log(free)
  console.log(`load average: ${loadavg().map((load) => load.toFixed(2)).join(' ')} (other work on the machine skews every figure)`)
  console.log(`requests per run: ${REQUESTS}, concurrency: ${CONCURRENCY}; A1/B1: ${SERIAL} at concurrency 1; sessions: ${SESSIONS}\n`)
}

function printTable(results: Figures[]): void {
  console.log(
    '| run | concurrency | requests | p50 ms | p99 ms | req/s | CPU µs/req: client | server | upstream |\n' +
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  )
  for (const r of results) {
    const server = r.serverCpuUs === undefined ? '' : Math.round(r.serverCpuUs)
    console.log(
      `| ${r.label} | ${r.concurrency} | ${r.requests} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} | ${Math.round(r.rps)} | ${Math.round(r.clientCpuUs)} | ${server} | ${Math.round(r.upstreamCpuUs)} |`,
    )
  }
}

function check(name: string, value: number, goal: string, met: boolean): string {
  return `| ${name} | ${value.toFixed(2)} | ${goal} | ${goal === '(info)' ? '' : met ? 'yes' : 'NO'} |`
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1)
}

/** The relay as `npm start` runs it (its flags, the default SQLite store, default log level), in a temp dir. */
function startRelay(port: number, upstreamUrl: string, logPath: string, store = 'relay'): ChildProcess {
  const log = openSync(logPath, 'a')
  const child = spawn(process.execPath, [...RELAY_FLAGS, join(root, 'src/main.ts')], {
    cwd: workDir,
    stdio: ['ignore', log, log],
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
      RELAY_API_KEYS: API_KEY,
      MCP_SERVERS_JSON: JSON.stringify({ servers: [{ server_id: 'echo', description: 'Bench upstream', mcp_url: upstreamUrl }] }),
      STORE_URL: `sqlite://${join(workDir, `${store}.sqlite`)}`,
      ...(process.env.BENCH_RELAY_LOG_LEVEL ? { LOG_LEVEL: process.env.BENCH_RELAY_LOG_LEVEL } : {}),
      ...(process.env.BENCH_RELAY_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_RELAY_NODE_OPTIONS } : {}),
    },
  })
  children.push(child)
  return child
}

async function waitUntilReady(port: number, relay: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    if (relay.exitCode !== null) throw new Error(`the relay exited (${relay.exitCode}):\n${readFileSync(logPath, 'utf8')}`)
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)
    if (ok) return
    if (Date.now() > deadline) throw new Error(`the relay did not start within 20 s:\n${readFileSync(logPath, 'utf8')}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function forkChild(script: string): ChildProcess {
  const child = fork(join(root, script), { execArgv: NODE_FLAGS, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  return child
}

function message<T>(child: ChildProcess, type: string, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${type}' message within ${timeoutMs} ms`)), timeoutMs)
    const onMessage = (msg: { type?: string } & T) => {
      if (msg.type !== type) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolve(msg)
    }
    child.on('message', onMessage)
    child.once('exit', (code) => reject(new Error(`${type}: the child exited (${code})`)))
  })
}

async function counters(upstream: ChildProcess): Promise<{ initialize: number; requests: number; sessionsOpen: number }> {
  const reply = message<{ counters: { initialize: number; requests: number; sessionsOpen: number } }>(upstream, 'counters')
  upstream.send({ type: 'counters' })
  return (await reply).counters
}

/** CPU seconds (user + system) a child has used so far, from /proc (clock ticks of 10 ms). */
function cpuOf(child: ChildProcess): number {
  const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** The relay's memory as its /metrics reports it (prom-client's process metrics). */
async function memoryOf(port: number): Promise<{ rss: number; heapTotal: number; heapUsed: number; newSpace: number; external: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^mcp_relay_${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return {
    rss: read('process_resident_memory_bytes'),
    heapTotal: read('nodejs_heap_size_total_bytes'),
    heapUsed: read('nodejs_heap_size_used_bytes'),
    newSpace: read('nodejs_heap_space_size_total_bytes\\{space="new"\\}'),
    external: read('nodejs_external_memory_bytes'),
  }
}

function rssOf(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024
}

function postJson(agent: Agent, port: number, path: string, body: unknown): Promise<{ status: number; text: string }> {
  const payload = JSON.stringify(body)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), authorization: `Bearer ${API_KEY}` },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

/** Stops what this bench started, by pid: the relay first (it ends its sessions upstream on SIGTERM). */
async function stopChildren(): Promise<void> {
  for (const child of children.reverse()) await stopChild(child)
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  if (child.connected) child.disconnect()
  else child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}
