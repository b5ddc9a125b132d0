// src/main.ts as operators run it (a process of its own, configured through the environment):
// SIGTERM stops accepting connections, lets the request in flight finish, closes the pooled
// upstream sessions and the store, and exits 0 within the shutdown bound.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startMcpUpstream, type McpUpstream } from './peers/mcp-upstream.ts'
import { startModernUpstream, type ModernUpstream } from './peers/modern-upstream.ts'
import { SLOW_TOOL } from './peers/upstream-tools.ts'
import { freePort } from './support/free-port.ts'
import { claimRedisDatabase } from './support/isolated-stores.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const API_KEY = 'shutdown-key-0123456789abcdef'
/** main.ts's SHUTDOWN_GRACE_MS, plus room for the process to start its exit. */
const EXIT_BOUND_MS = 12_000

let upstream: McpUpstream
let modern: ModernUpstream
let child: ChildProcess | undefined
let output = ''

beforeAll(async () => {
  ;[upstream, modern] = await Promise.all([startMcpUpstream({ extraTools: [SLOW_TOOL] }), startModernUpstream()])
})

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  await Promise.all([upstream?.close(), modern?.close()])
})

/** Polls `check` every 20 ms until it returns true; throws after `timeoutMs` (with the relay's output). */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${output}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Whether a new TCP connection to `port` is refused (the listening socket is closed). */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' })
    socket.setTimeout(2000)
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

describe('graceful shutdown of src/main.ts', () => {
  it('on SIGTERM finishes the call in flight, refuses new connections, closes upstream sessions, exits 0', async () => {
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    child = spawn(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'src/main.ts'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        PORT: String(port),
        HOST: '127.0.0.1',
        PUBLIC_BASE_URL: url,
        RELAY_API_KEYS: API_KEY,
        STORE_URL: 'memory://',
        MCP_SERVERS_JSON: JSON.stringify({ servers: [{ server_id: 'open', description: 'Open server', mcp_url: upstream.url }] }),
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child!.once('exit', (code, signal) => resolve({ code, signal })),
    )

    await until('the relay is ready', async () => {
      if (child!.exitCode !== null) throw new Error(`the relay exited early\n${output}`)
      return fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
        (response) => response.status === 200,
        () => false,
      )
    })

    const call = (userId: string, toolRef: string, input: object) =>
      fetch(`${url}/tools/call-tool`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: userId, tool_ref: toolRef, input }),
        signal: AbortSignal.timeout(20_000),
      })

    // Two users, two pooled sessions upstream.
    const warm = await call('amy', 'open::echo', { text: 'hi' })
    expect(warm.status).toBe(200)
    expect(((await warm.json()) as { ok: boolean }).ok).toBe(true)
    const callsBefore = upstream.counters.toolsCall
    const slow = call('ben', 'open::slow', { ms: 1000 })
    await until('the slow call reached the upstream', () => upstream.counters.toolsCall > callsBefore)
    expect(upstream.counters.sessionsOpen()).toBe(2)

    child.kill('SIGTERM')
    // Draining: the process is still there (the call is in flight) but takes no new connection.
    await until('new connections are refused', () => connectionRefused(port))
    expect(child.exitCode).toBeNull()

    const answer = await slow
    expect(answer.status).toBe(200)
    expect(await answer.json()).toMatchObject({ ok: true, tool_ref: 'open::slow', result: { isError: false } })

    const exit = await Promise.race([
      exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within ${EXIT_BOUND_MS} ms\n${output}`)), EXIT_BOUND_MS)),
    ])
    expect(exit, output).toEqual({ code: 0, signal: null })
    // The pool ended both sessions upstream on the way out.
    await until('the upstream sessions are closed', () => upstream.counters.sessionsOpen() === 0, 5000)

    const messages = output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => (JSON.parse(line) as { msg?: string }).msg)
    expect(messages).toContain('shutting down')
    expect(messages).not.toContain('shutdown took too long, exiting')
  })
})

describe('a clean start of src/main.ts', () => {
  it.each(['sqlite', 'redis'] as const)('prints nothing on stderr (no deprecation, no experimental feature, no SDK warning) and JSON log lines on stdout when it is not a terminal (%s store)', async (kind) => {
    // The same node flags as `npm start`, read from package.json so the test follows the script.
    const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start
    const [node, ...args] = start.split(' ')
    expect(node).toBe('node')
    const port = await freePort()
    // The default store kind (SQLite through node:sqlite, experimental on Node 22), in a temp dir.
    const dataDir = mkdtempSync(join(tmpdir(), 'relay-clean-start-'))
    // A shared store too: every namespace's adapter listens on one Redis client (no listener warning).
    const redis = kind === 'redis' ? await claimRedisDatabase() : undefined
    const store = redis
      ? { STORE_URL: redis.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }
      : { STORE_URL: `sqlite://${join(dataDir, 'relay.sqlite')}` }
    let stdout = ''
    let stderr = ''
    const started = spawn(process.execPath, args, {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        PORT: String(port),
        HOST: '127.0.0.1',
        ...store,
        RELAY_API_KEYS: API_KEY,
        // The 2026-07-28 peer lists a tool with an invalid x-mcp-header declaration, which the
        // SDK's client leaves out with a console.warn.
        MCP_SERVERS_JSON: JSON.stringify({ servers: [{ server_id: 'open', mcp_url: upstream.url }, { server_id: 'modern', mcp_url: modern.url }] }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = started
    started.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    started.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = new Promise<number | null>((resolve) => started.once('exit', (code) => resolve(code)))
    try {
      await until('the relay is listening', () => {
        if (started.exitCode !== null) throw new Error(`the relay exited early\n${stdout}${stderr}`)
        return stdout.includes('"relay listening"')
      })
      const openapi = await fetch(`http://127.0.0.1:${port}/openapi.json`, { signal: AbortSignal.timeout(5000) })
      expect(openapi.status).toBe(200)
      const listed = await fetch(`http://127.0.0.1:${port}/tools/list-tools`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: 'u1', server_ids: ['modern'] }),
        signal: AbortSignal.timeout(20_000),
      }).then((response) => response.json() as Promise<{ tools: Array<{ name: string }> }>)
      expect(listed.tools.map((tool) => tool.name)).toContain('regional')
      expect(listed.tools.map((tool) => tool.name)).not.toContain('misdeclared')
      await until('the request lines', () => stdout.split('"request completed"').length === 3)
      started.kill('SIGTERM')
      expect(await exited).toBe(0)

      expect(stderr).not.toMatch(/Warning|DEP\d/)
      expect(stderr).toBe('')
      const lines = stdout.split('\n').filter(Boolean)
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow()
      const messages = lines.map((line) => (JSON.parse(line) as { msg: string }).msg)
      expect(messages).toEqual(expect.arrayContaining(['relay listening', 'request completed', 'shutting down']))
      // PUBLIC_BASE_URL is http://localhost:PORT, which Dify's import refuses: one warning line says so.
      expect(messages.filter((message) => message.startsWith('TOOLS_BASE_URL'))).toEqual([
        expect.stringMatching(/^TOOLS_BASE_URL \(not set, so PUBLIC_BASE_URL\) is http:\/\/localhost:\d+, which Dify's Custom Tool import refuses/),
      ])
      // The SDK's warning is a log line of the relay's, at warn.
      expect(lines.map((line) => JSON.parse(line) as { level: number; component?: string; msg: string }).filter((line) => line.component === 'console')).toEqual([
        expect.objectContaining({ level: 40, msg: expect.stringMatching(/^\[mcp-sdk\] excluding tool 'misdeclared' from tools\/list: invalid x-mcp-header declaration/) }),
      ])
      // One line per request: Fastify's own 'incoming request' line stays off.
      expect(messages).not.toContain('incoming request')
    } finally {
      if (started.exitCode === null && started.signalCode === null) started.kill('SIGKILL')
      rmSync(dataDir, { recursive: true, force: true })
      await redis?.release()
    }
  })
})
