// What the private Redis and PostgreSQL servers of a test run have in common.
import type { ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'

export interface RunningService {
  url: string
  /** Stops the server and removes its files. */
  stop(): Promise<void>
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Sends `signal` and waits for the exit; SIGKILL after `graceMs`. */
export async function waitForExit(child: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}
