// The relay as operators run it: `src/main.ts` in a child process of its own, configured only
// through the environment, on a real port. For tests of replicas, restarts and crashes.
import { spawn, type ChildProcess } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { vi } from 'vitest'
import { freePort } from './free-port.ts'

// A file that starts relay processes waits for them: up to a minute each on a loaded machine
// (see startRelayProcess), so its tests and hooks get two, unless they name their own bound.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 })

export const PROCESS_API_KEY = 'process-key-0123456789abcdef'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const NODE_ARGS = ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'src/main.ts']
const LOOP_PROBE = fileURLToPath(new URL('./loop-probe.ts', import.meta.url))

/** What test/support/loop-probe.ts measured in the relay process since the last read. */
export interface LoopStats {
  /** The longest main-thread CPU time between two ticks of a 5 ms timer (ms): the longest stall of the relay's own making. */
  maxBlockedCpuMs: number
  /** The longest wall-time delay of that timer (ms): stalls plus whatever the machine's scheduler added. */
  maxDelayMs: number
  ticks: number
}

export interface RelayProcess {
  /** http://127.0.0.1:PORT, where this process listens (PUBLIC_BASE_URL may name another). */
  readonly url: string
  readonly port: number
  readonly env: Readonly<Record<string, string>>
  /** POSTs JSON with the API key (or the one given); returns status and parsed body. */
  post(path: string, body: unknown, options?: { apiKey?: string }): Promise<{ status: number; body: any }>
  get(path: string): Promise<{ status: number; body: any }>
  /**
   * The pino lines the process wrote so far, parsed. They reach the test through a pipe and may
   * trail the HTTP answers: call logsSettled() first when a line must be there (or must not).
   */
  logs(): Array<Record<string, unknown> & { msg?: string }>
  /** Resolves once every line written before this call has arrived (at most 10 s). */
  logsSettled(): Promise<void>
  /**
   * With `loopProbe`: what the relay's event loop went through since the last read (loop-probe.ts),
   * and the next window starts.
   */
  loopStats(): Promise<LoopStats>
  /** Sends `signal` (default SIGTERM) and waits for the exit, SIGKILL after `graceMs` (default 5000). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>
  readonly exited: boolean
}

const running = new Set<ChildProcess>()
// A test worker that dies leaves no relay behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/**
 * Starts `node src/main.ts` with `env` (over PORT, HOST, PUBLIC_BASE_URL, RELAY_API_KEYS and
 * LOG_LEVEL defaults; nothing is inherited but PATH and HOME) and waits until /readyz answers 200,
 * for at most `readyTimeoutMs` (default 60 s: a start is ~2.5 s of CPU, which two cores shared
 * with a whole test run can stretch past 20 s). Rejects with the process's output if it exits or
 * never gets ready.
 */
export async function startRelayProcess(
  env: Record<string, string>,
  options: {
    port?: number
    readyTimeoutMs?: number
    /** Preload test/support/loop-probe.ts (and open an IPC channel to it) for loopStats(). */
    loopProbe?: boolean
  } = {},
): Promise<RelayProcess> {
  const port = options.port ?? (await freePort())
  const url = `http://127.0.0.1:${port}`
  const fullEnv: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: url,
    RELAY_API_KEYS: PROCESS_API_KEY,
    LOG_LEVEL: 'info',
    // V8's compile cache (and Node's of stripped TypeScript), shared by every process the tests
    // start: a third less start-up work for each one after the first.
    NODE_COMPILE_CACHE: join(tmpdir(), 'mcp-auth-relay-test-compile-cache'),
    ...env,
  }
  const args = options.loopProbe ? ['--import', LOOP_PROBE, ...NODE_ARGS] : NODE_ARGS
  const child = spawn(process.execPath, args, { cwd: ROOT, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe', ...(options.loopProbe ? (['ipc'] as const) : [])] })
  running.add(child)
  let output = ''
  const lines: Array<Record<string, unknown>> = []
  let partial = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = chunk.toString()
    output += text
    partial += text
    const complete = partial.split('\n')
    partial = complete.pop() ?? ''
    for (const line of complete) {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>)
      } catch {
        // Not a pino line (a stray write): kept in `output` for failure messages only.
      }
    }
  })
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString()
  })
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child)
      resolve()
    })
  })

  async function request(method: 'GET' | 'POST', path: string, body?: unknown, apiKey = PROCESS_API_KEY) {
    const headers: Record<string, string> = { authorization: `Bearer ${apiKey}` }
    if (body !== undefined) headers['content-type'] = 'application/json'
    const response = await fetch(`${url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    })
    const text = await response.text()
    let parsed: unknown = text
    try {
      parsed = JSON.parse(text)
    } catch {
      // not JSON: the test sees the raw text
    }
    return { status: response.status, body: parsed as any }
  }

  let reads = 0
  const relay: RelayProcess = {
    url,
    port,
    env: fullEnv,
    post: (path, body, { apiKey } = {}) => request('POST', path, body, apiKey),
    get: (path) => request('GET', path),
    logs: () => lines,
    async logsSettled() {
      // A request the relay logs: its 'request completed' line comes after everything written before.
      const completed = () => lines.filter((line) => line.msg === 'request completed').length
      const before = completed()
      await request('POST', '/tools/auth-status', {})
      const giveUpAt = Date.now() + 10_000
      while (completed() === before) {
        if (Date.now() > giveUpAt) throw new Error('the relay process logged no request line within 10 s (LOG_LEVEL below info?)')
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    },
    loopStats() {
      if (!options.loopProbe) return Promise.reject(new Error('started without loopProbe'))
      const read = ++reads
      return new Promise<LoopStats>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.off('message', onMessage)
          reject(new Error('the relay process did not report its loop within 10 s'))
        }, 10_000)
        const onMessage = (message: { read?: number; stats?: LoopStats }) => {
          if (message?.read !== read || !message.stats) return
          clearTimeout(timer)
          child.off('message', onMessage)
          resolve(message.stats)
        }
        child.on('message', onMessage)
        child.send({ read })
      })
    },
    get exited() {
      return child.exitCode !== null || child.signalCode !== null
    },
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      if (relay.exited) return
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exit
      clearTimeout(timer)
    },
  }

  const giveUpAt = Date.now() + (options.readyTimeoutMs ?? 60_000)
  for (;;) {
    if (relay.exited) throw new Error(`relay process exited before it was ready:\n${output}`)
    try {
      const ready = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })
      await ready.body?.cancel()
      if (ready.status === 200) return relay
    } catch {
      // not listening yet
    }
    if (Date.now() > giveUpAt) {
      await relay.stop('SIGKILL')
      throw new Error(`relay process not ready within ${options.readyTimeoutMs ?? 60_000} ms:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** The servers config for MCP_SERVERS_JSON. */
export function serversJson(servers: Array<{ server_id: string; mcp_url: string; description?: string }>): string {
  return JSON.stringify({ servers })
}

/** Sign-outs a relay process logged: a token it removed after a refused refresh or a refused fresh token. */
export async function signOutsIn(relay: RelayProcess): Promise<number> {
  await relay.logsSettled()
  return relay.logs().filter((line) => typeof line.msg === 'string' && /token removed/.test(line.msg)).length
}
