// The Redis the tests share: the machine's when it answers, else a private redis-server on a free
// loopback port with a temp dir, stopped and removed when the run ends.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, waitForExit, type RunningService } from './service-process.ts'

/** Whether a Redis server answers PING at `url` within `timeoutMs` (after AUTH when the URL has a password). */
export function redisAnswers(url: string, timeoutMs = 1500): Promise<boolean> {
  const { hostname, port, username, password } = new URL(url)
  return new Promise((resolve) => {
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port || 6379) })
    let reply = ''
    const done = (answers: boolean) => {
      socket.destroy()
      resolve(answers)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => {
      const auth = password ? `AUTH ${decodeURIComponent(username || 'default')} ${decodeURIComponent(password)}\r\n` : ''
      socket.write(`${auth}PING\r\n`)
    })
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('+PONG')) done(true)
      else if (reply.includes('-')) done(false) // NOAUTH, WRONGPASS, LOADING: not usable as it is
    })
  })
}

/** A redis-server of this run's own: no persistence, loopback only, a free port. */
export async function startRedis(program: string): Promise<RunningService> {
  const dir = mkdtempSync(join(tmpdir(), 'relay-test-redis-'))
  const port = await freePort()
  const child = spawn(program, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  // Its log is read to the end (a full pipe would block the server), kept until it is ready.
  let output = ''
  let ready = false
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not get ready within 10 s:\n${output}`)), 10_000)
      const read = (chunk: Buffer) => {
        if (ready) return
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) {
          ready = true
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout.on('data', read)
      child.stderr.on('data', read)
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${code}:\n${output}`))
      })
    })
  } catch (error) {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      await waitForExit(child, 'SIGTERM', 10_000)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
