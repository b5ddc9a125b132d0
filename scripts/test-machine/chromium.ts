// Chromium for the browser tests: CHROMIUM_PATH when set, else the distribution's package, else
// the headless Chromium that ships inside the `@sparticuz/chromium` dev dependency (DESIGN.md §2:
// what an npm package can bring, the test command brings itself).
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { findChromium, isExecutableFile, type Prerequisite } from './prerequisites.ts'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PACKAGE = '@sparticuz/chromium'

export type ChromiumLookup =
  /** `from` says where it came from, for the test command's log line. */
  | { kind: 'found'; path: string; from: string }
  | { kind: 'missing'; missing: Prerequisite[] }
  /** A CHROMIUM_PATH that is no program: said as it is, rather than quietly using another browser. */
  | { kind: 'refused'; line: string }

/**
 * Finds the Chromium the browser tests use. Outcomes: `found`; `missing` with what to install (no
 * Chromium on this platform's npm package, or shared libraries it needs that the system lacks);
 * `refused` for a CHROMIUM_PATH that is not an executable file.
 */
export async function findChromiumForTests(env: NodeJS.ProcessEnv, options: { cacheDir?: string } = {}): Promise<ChromiumLookup> {
  const system = findChromium(env)
  if (system) return { kind: 'found', path: system, from: env.CHROMIUM_PATH ? 'CHROMIUM_PATH' : 'the system' }
  if (env.CHROMIUM_PATH) {
    return { kind: 'refused', line: `CHROMIUM_PATH: ${env.CHROMIUM_PATH} is not an executable file (unset it to use the system's Chromium or the one from npm)` }
  }
  const npm = npmChromiumPackage()
  if (!npm) return { kind: 'missing', missing: ['Chromium'] }
  const path = await unpackChromium(npm, options.cacheDir ?? join(ROOT, 'node_modules', '.cache', 'mcp-auth-relay'))
  const missing = await missingLibraries(path)
  return missing.length > 0 ? { kind: 'missing', missing } : { kind: 'found', path, from: `${PACKAGE} ${npm.version}` }
}

/** The installed package, when it has a Chromium for this machine (Linux on x64). */
export function npmChromiumPackage(): { dir: string; version: string } | undefined {
  if (process.platform !== 'linux' || process.arch !== 'x64') return undefined
  try {
    // The package exports only build/index.js; its package.json and bin/ sit one level up.
    const dir = dirname(dirname(createRequire(import.meta.url).resolve(PACKAGE)))
    return { dir, version: (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version }
  } catch {
    return undefined // not installed (npm ci --omit=dev): the distribution's package is the way
  }
}

/**
 * The package's Chromium, unpacked once per version under `cacheDir` (~3 s, 210 MB). The package
 * unpacks into os.tmpdir() and takes any file already there as done, even half written, and
 * vitest's workers may ask at the same time: so each unpacks in a child process whose TMPDIR is a
 * fresh directory of its own, renamed into place only once complete (a rename either lands whole
 * or finds another unpack's result already there).
 */
export async function unpackChromium(npm: { dir: string; version: string }, cacheDir: string): Promise<string> {
  const target = join(cacheDir, `chromium-${npm.version}`)
  const program = join(target, 'chromium')
  if (isExecutableFile(program)) return program
  mkdirSync(cacheDir, { recursive: true })
  const staging = mkdtempSync(join(cacheDir, `.chromium-${npm.version}-`))
  try {
    await run(process.execPath, ['--input-type=module', '-e', `const { default: chromium } = await import(${JSON.stringify(PACKAGE)}); await chromium.executablePath()`], {
      cwd: npm.dir,
      env: { ...process.env, TMPDIR: staging },
      timeout: 120_000,
    })
    try {
      renameSync(staging, target)
    } catch (error) {
      // Another unpack finished first: its copy is complete, and this one is not needed.
      if (!existsSync(program)) throw error
    }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
  return program
}

/** Shared libraries the dynamic loader lacks for `program`, mapped to what installs each. */
const LIBRARIES: Array<[RegExp, Prerequisite]> = [
  [/^lib(nss3|nssutil3|smime3|ssl3)\.so/, 'libnss3 (for Chromium)'],
  [/^lib(nspr4|plc4|plds4)\.so/, 'libnspr4 (for Chromium)'],
  [/^libexpat\.so/, 'libexpat1 (for Chromium)'],
]

/**
 * Runs `program --version`: the npm Chromium needs a few system libraries (NSS, NSPR, Expat) that a
 * minimal Debian or Ubuntu may lack, and no npm package brings them. An unknown missing library
 * falls back to the distribution's Chromium, whose package brings everything it needs.
 */
export async function missingLibraries(program: string): Promise<Prerequisite[]> {
  try {
    await run(program, ['--version'], { timeout: 30_000 })
    return []
  } catch (error) {
    // "error while loading shared libraries: libnss3.so: cannot open shared object file" (absent), or
    // with its path when the file is there but broken ("/lib/…/libnss3.so: file too short").
    const library = /error while loading shared libraries: ([^:\s]+)/.exec(String((error as { stderr?: string }).stderr))?.[1]
    const known = library && LIBRARIES.find(([pattern]) => pattern.test(basename(library)))
    return [known ? known[1] : 'Chromium']
  }
}
