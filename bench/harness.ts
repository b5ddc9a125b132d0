// What bench/run.ts and bench/memory.ts share: the relay started as `npm start` starts it, in
// its own process; child processes spoken to over IPC; the load generator and its figures; the
// relay's memory as its /metrics reports it.
import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { openSync, readFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import type { SeedRequest } from './seed-tokens.ts'

export const API_KEY = 'bench-key-0123456789abcdef'
export const NODE_FLAGS = ['--experimental-strip-types', '--disable-warning=ExperimentalWarning']
/**
 * The relay's own flags, as `npm start` and the Docker image set them: a young generation of
 * 8 MiB semi-spaces (V8 sizes it from the host's memory, 64 MiB here) caps the peak while 1,000
 * sessions open and lets RSS settle, at no CPU cost measured (docs/benchmarks.md).
 */
const RELAY_FLAGS = [...NODE_FLAGS, '--max-semi-space-size=8']
export const root = new URL('..', import.meta.url).pathname

export interface Figures {
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

export interface RelayMemory {
  rss: number
  heapTotal: number
  heapUsed: number
  newSpace: number
  external: number
}

const children: ChildProcess[] = []

/** What one stretch of load measured: each request's latency (ms), the wall time, this process's CPU (µs). */
export interface Slice {
  latencies: Float64Array
  elapsedMs: number
  clientCpuUs: number
}

/** Runs `task(i)` for i in from…from+requests−1 on `concurrency` workers. */
export async function runSlice(concurrency: number, from: number, requests: number, task: (i: number) => Promise<unknown>): Promise<Slice> {
  const latencies = new Float64Array(requests)
  let next = 0
  const started = performance.now()
  const cpu = process.cpuUsage()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < requests; i = next++) {
        const t0 = performance.now()
        await task(from + i)
        latencies[i] = performance.now() - t0
      }
    }),
  )
  const used = process.cpuUsage(cpu)
  return { latencies, elapsedMs: performance.now() - started, clientCpuUs: used.user + used.system }
}

/** Latency percentiles over every slice, throughput over their summed wall time, client CPU per request. */
export function figuresOf(label: string, concurrency: number, slices: Slice[]): Figures {
  const requests = slices.reduce((sum, slice) => sum + slice.latencies.length, 0)
  const latencies = new Float64Array(requests)
  let at = 0
  for (const slice of slices) {
    latencies.set(slice.latencies, at)
    at += slice.latencies.length
  }
  latencies.sort()
  const quantile = (q: number) => latencies[Math.min(requests - 1, Math.ceil(q * requests) - 1)]!
  const elapsedMs = slices.reduce((sum, slice) => sum + slice.elapsedMs, 0)
  const clientCpuUs = slices.reduce((sum, slice) => sum + slice.clientCpuUs, 0)
  return { label, concurrency, requests, p50: quantile(0.5), p99: quantile(0.99), rps: (requests / elapsedMs) * 1000, clientCpuUs: clientCpuUs / requests, serverCpuUs: undefined, upstreamCpuUs: 0 }
}

/** Runs `task(i)` for i in 0…requests−1 on `concurrency` workers; latency percentiles, throughput, this process's CPU. */
export async function measure(label: string, concurrency: number, requests: number, task: (i: number) => Promise<unknown>): Promise<Figures> {
  return figuresOf(label, concurrency, [await runSlice(concurrency, 0, requests, task)])
}

export function printMachine(settings: string): void {
  const free = execFileSync('free', ['-h'], { encoding: 'utf8' }).trim()
  console.log(`# ${settings.split('\n')[0]}   (node ${process.version}, ${execFileSync('nproc', { encoding: 'utf8' }).trim()} cores: ${cpus()[0]?.model ?? '?'})`)
  console.log(free)
  console.log(`load average: ${loadAverage()} (other work on the machine skews every figure)`)
  console.log(`${settings.split('\n').slice(1).join('\n')}\n`)
}

export function loadAverage(): string {
  return loadavg().map((load) => load.toFixed(2)).join(' ')
}

export function printTable(results: Figures[]): void {
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

/** One row of the targets table; `goal` '(info)' marks a figure without a target. */
export function check(name: string, value: number, goal: string, met: boolean): string {
  return `| ${name} | ${value.toFixed(2)} | ${goal} | ${goal === '(info)' ? '' : met ? 'yes' : 'NO'} |`
}

export function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1)
}

/**
 * The environment of a relay as `npm start` runs it: the default SQLite store (at `storePath`,
 * its key file beside it), default log level, the bench's API key and `servers`. The token seeder
 * (bench/seed-tokens.ts) reads the same environment to write into the same store.
 */
export function relayEnv(options: { port: number; servers: object[]; storePath: string }): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    PORT: String(options.port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: `http://127.0.0.1:${options.port}`,
    RELAY_API_KEYS: API_KEY,
    MCP_SERVERS_JSON: JSON.stringify({ servers: options.servers }),
    STORE_URL: `sqlite://${options.storePath}`,
    ...(process.env.BENCH_RELAY_LOG_LEVEL ? { LOG_LEVEL: process.env.BENCH_RELAY_LOG_LEVEL } : {}),
    ...(process.env.BENCH_RELAY_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_RELAY_NODE_OPTIONS } : {}),
  }
}

/**
 * The relay as `npm start` runs it (its flags), from `tree` (default this one: another checkout
 * runs the relay of another commit), in `workDir`, its output appended to `logPath`.
 */
export function startRelay(env: Record<string, string>, options: { workDir: string; logPath: string; tree?: string }): ChildProcess {
  const log = openSync(options.logPath, 'a')
  const child = spawn(process.execPath, [...RELAY_FLAGS, join(options.tree ?? root, 'src/main.ts')], { cwd: options.workDir, stdio: ['ignore', log, log], env })
  children.push(child)
  return child
}

export async function waitUntilReady(port: number, relay: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    if (relay.exitCode !== null) throw new Error(`the relay exited (${relay.exitCode}):\n${readFileSync(logPath, 'utf8')}`)
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)
    if (ok) return
    if (Date.now() > deadline) throw new Error(`the relay did not start within 20 s:\n${readFileSync(logPath, 'utf8')}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Starts `script` with `input` as its argument (JSON: no message can arrive before the child listens). */
export function forkChild(script: string, input?: object): ChildProcess {
  const child = fork(join(root, script), input === undefined ? [] : [JSON.stringify(input)], { execArgv: NODE_FLAGS, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.push(child)
  return child
}

/** The next IPC message of `type` from `child`. */
export function message<T>(child: ChildProcess, type: string, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => {
      clearTimeout(timer)
      child.off('message', onMessage)
      reject(new Error(`${type}: the child exited (${code})`))
    }
    const timer = setTimeout(() => {
      child.off('message', onMessage)
      child.off('exit', onExit)
      reject(new Error(`no '${type}' message within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (msg: { type?: string } & T) => {
      if (msg.type !== type) return
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(msg)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** What the parent passed to this child process (forkChild's `input`). */
export function childInput<T>(): T {
  return JSON.parse(process.argv[2]!) as T
}

/** Sends `{ type }` and waits for the answer of the same type. */
export async function ask<T>(child: ChildProcess, type: string, body: object = {}, timeoutMs?: number): Promise<T> {
  const reply = message<T>(child, type, timeoutMs)
  child.send({ type, ...body })
  return reply
}

/** Writes the tokens `request` names into a relay's store (bench/seed-tokens.ts), before that relay starts. */
export async function seedTokens(request: SeedRequest): Promise<{ count: number; seconds: number }> {
  return message(forkChild('bench/seed-tokens.ts', request), 'seeded', 30 * 60_000)
}

/** CPU seconds (user + system) a child has used so far, from /proc (clock ticks of 10 ms). */
export function cpuOf(child: ChildProcess): number {
  const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** The relay's memory as its /metrics reports it (prom-client's process metrics). */
export async function memoryOf(port: number): Promise<RelayMemory> {
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

export function rssOf(child: ChildProcess): number {
  const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024
}

/** A JSON POST with the bench's API key over `agent` (keep-alive). */
export function postJson(agent: Agent, port: number, path: string, body: unknown): Promise<{ status: number; text: string }> {
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

/** `POST /tools/call-tool` through the relay; throws unless the answer is `ok: true`. */
export async function callThroughRelay(agent: Agent, port: number, userId: string, toolRef: string, text: string): Promise<void> {
  const answer = await postJson(agent, port, '/tools/call-tool', { user_id: userId, tool_ref: toolRef, input: { text } })
  if (answer.status !== 200 || !answer.text.startsWith('{"ok":true')) throw new Error(`call-tool ${toolRef} answered ${answer.status}: ${answer.text.slice(0, 500)}`)
}

/** Stops what the bench started, by pid, last started first: a relay ends its sessions upstream on SIGTERM. */
export async function stopChildren(): Promise<void> {
  for (const child of children.reverse()) await stopChild(child)
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  if (child.connected) child.disconnect()
  else child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  await exited
  clearTimeout(timer)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
