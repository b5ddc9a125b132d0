// The MCP project's own reference server, @modelcontextprotocol/server-everything (pinned in
// package.json), run as published: its CLI in Streamable HTTP mode, as a child process on a free
// port. Written by others, so the relay is tried against a server whose code it did not shape.
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { freePort } from '../support/free-port.ts'

export interface EverythingServer {
  /** http://127.0.0.1:PORT/mcp */
  url: string
  close(): Promise<void>
}

const STARTUP_TIMEOUT_MS = 15_000

export async function startEverythingServer(): Promise<EverythingServer> {
  const require = createRequire(import.meta.url)
  const cli = join(dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')), 'dist', 'index.js')
  const port = await freePort()
  // Only PATH and PORT: its get-env tool prints the environment it was given.
  const child = spawn(process.execPath, [cli, 'streamableHttp'], { env: { PATH: process.env.PATH, PORT: String(port) }, stdio: ['ignore', 'ignore', 'pipe'] })
  await new Promise<void>((resolve, reject) => {
    let stderr = ''
    const timer = setTimeout(() => fail(new Error(`server-everything did not start within ${STARTUP_TIMEOUT_MS} ms: ${stderr}`)), STARTUP_TIMEOUT_MS)
    const onData = (chunk: Buffer) => {
      stderr += String(chunk)
      // Its one start-up line: "MCP Streamable HTTP Server listening on port <PORT>".
      if (stderr.includes(`listening on port ${port}`)) done()
    }
    const onExit = (code: number | null) => fail(new Error(`server-everything exited with ${code} before listening: ${stderr}`))
    function done() {
      clearTimeout(timer)
      child.stderr!.off('data', onData)
      child.off('exit', onExit)
      // Keep draining its log so the pipe never fills.
      child.stderr!.resume()
      resolve()
    }
    function fail(error: Error) {
      clearTimeout(timer)
      child.kill('SIGKILL')
      reject(error)
    }
    child.stderr!.on('data', onData)
    child.once('exit', onExit)
  })
  return { url: `http://127.0.0.1:${port}/mcp`, close: () => stop(child) }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}
