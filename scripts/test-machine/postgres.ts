// The PostgreSQL the tests share: the machine's when it answers, else a private cluster (initdb in
// a temp dir, trust auth, a free loopback port, no fsync), stopped and removed when the run ends.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { chownSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { PostgresBinaries } from './prerequisites.ts'
import { freePort, waitForExit, type RunningService } from './service-process.ts'

/** Whether `SELECT 1` succeeds at `url` (server up, database there, this role let in) within `timeoutMs`. */
export async function postgresAnswers(url: string, timeoutMs = 2000): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs })
  client.on('error', () => undefined) // a connection dropped after the check changes nothing
  try {
    await client.connect()
    await client.query('SELECT 1')
    return true
  } catch {
    return false // refused, no such database or role: not usable as it is
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** The uid and gid of `nobody`, who runs the server when this process is root (PostgreSQL refuses root). */
function nobody(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((entry) => entry.startsWith('nobody:'))
  const [, , uid, gid] = line?.split(':') ?? []
  return { uid: Number(uid ?? 65534), gid: Number(gid ?? 65534) }
}

/** A private PostgreSQL cluster with a database named `test`, as the tests expect. */
export async function startPostgres(binaries: PostgresBinaries): Promise<RunningService> {
  const dir = mkdtempSync(join(tmpdir(), 'relay-test-postgres-'))
  const user = process.getuid?.() === 0 ? nobody() : undefined
  const env = { ...process.env, LC_ALL: 'C', LANG: 'C' }
  let { initdb, postgres } = binaries
  let child: ReturnType<typeof spawn> | undefined
  try {
    if (binaries.embeddedPackageDir) {
      // npm keeps no symlinks in a package and this project installs with ignore-scripts, so the
      // package's own postinstall (which recreates the shared libraries' symlinks) is run here.
      execFileSync(process.execPath, ['scripts/hydrate-symlinks.js'], { cwd: binaries.embeddedPackageDir, stdio: 'ignore' })
    }
    if (user) {
      chownSync(dir, user.uid, user.gid)
      // `nobody` may not reach the binaries (node_modules under /root, say): use a copy in the temp dir.
      if (spawnSync(initdb, ['--version'], { ...user, stdio: 'ignore' }).status !== 0 && binaries.embeddedPackageDir) {
        cpSync(join(binaries.embeddedPackageDir, 'native'), join(dir, 'native'), { recursive: true, verbatimSymlinks: true })
        initdb = join(dir, 'native', 'bin', 'initdb')
        postgres = join(dir, 'native', 'bin', 'postgres')
      }
    }
    const data = join(dir, 'data')
    const init = spawnSync(initdb, ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
      ...user,
      env,
      encoding: 'utf8',
    })
    if (init.status !== 0) throw new Error(`initdb failed (${init.status ?? init.error?.message}):\n${init.stdout}${init.stderr}`)

    const port = await freePort()
    // Durability is not what these tests are about: no fsync keeps the two cores free for them.
    const started = spawn(postgres, [
      '-D', data, '-p', String(port), '-k', dir,
      '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    ], { ...user, env, stdio: ['ignore', 'pipe', 'pipe'] })
    child = started
    // Its log is read to the end (a full pipe would block the server), kept until it is ready.
    let output = ''
    let ready = false
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`postgres did not get ready within 20 s:\n${output}`)), 20_000)
      const read = (chunk: Buffer) => {
        if (ready) return
        output += chunk.toString()
        if (output.includes('database system is ready to accept connections')) {
          ready = true
          clearTimeout(timer)
          resolve()
        }
      }
      started.stdout!.on('data', read)
      started.stderr!.on('data', read)
      started.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`postgres exited with ${code}:\n${output}`))
      })
    })

    const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` })
    await admin.connect()
    await admin.query('CREATE DATABASE test')
    await admin.end()
    return {
      url: `postgres://postgres@127.0.0.1:${port}/test`,
      async stop() {
        // SIGINT: PostgreSQL's fast shutdown (disconnects clients, no waiting for them).
        await waitForExit(started, 'SIGINT', 10_000)
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    if (child) await waitForExit(child, 'SIGKILL', 1000)
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
