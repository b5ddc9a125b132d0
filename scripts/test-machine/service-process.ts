// What the private Redis and PostgreSQL servers of a test run have in common.
import type { ChildProcess } from 'node:child_process'
export { freePort } from '../../test/support/free-port.ts'

export interface RunningService {
  url: string
  /** Stops the server and removes its files. */
  stop(): Promise<void>
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
