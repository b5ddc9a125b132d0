import { spawn, type ChildProcess } from 'node:child_process'
import { REDIS_SERVER } from '../support/services.ts'
import { freePort } from './tcp-proxy.ts'

/**
 * A throwaway redis-server on a free loopback port, which a test can kill and start again on the
 * same port. With `dataDir` it keeps its data there (an RDB snapshot written when it is stopped
 * with `stop()`), so it comes back with what it held, as a Redis with persistence does.
 */
export async function startRedisProcess(options: { dataDir?: string } = {}) {
  const port = await freePort()
  let child: ChildProcess | undefined
  // `--save 3600 1` only so that a SIGTERM shutdown writes the snapshot (Redis saves on shutdown when a save point is set).
  const persistence = options.dataDir ? ['--dir', options.dataDir, '--save', '3600 1'] : ['--save', '']

  async function start(): Promise<void> {
    const started = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', ...persistence, '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = started
    await new Promise<void>((resolve, reject) => {
      let output = ''
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000)
      started.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      })
      started.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${code}: ${output}`))
      })
    })
  }

  /** SIGKILL: the server vanishes as in a crash, without closing anything politely. */
  async function kill(): Promise<void> {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGKILL')
    await exited
  }

  /** SIGTERM: a clean shutdown (with `dataDir`, after writing the snapshot). */
  async function stop(): Promise<void> {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null) return
    const exited = new Promise((resolve) => running.once('exit', resolve))
    running.kill('SIGTERM')
    await exited
  }

  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    kill,
    stop,
    /** SIGSTOP: the server hangs, connections open and silent, until `thaw`. */
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
  }
}
