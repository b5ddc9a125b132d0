import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json)
// runs each client scenario against test/conformance/driver.ts, which drives the relay through
// its own HTTP routes as Dify and a browser would. Every scenario must end with no FAILURE and no
// WARNING check, and the runner must report the scenario passed.

/** `--suite auth` of 0.1.16, the 2025-03-26 backcompat scenarios, the draft resource check, the enterprise extension, and the core client scenarios. */
const SCENARIOS = [
  'auth/metadata-default',
  'auth/metadata-var1',
  'auth/metadata-var2',
  'auth/metadata-var3',
  'auth/basic-cimd',
  'auth/scope-from-www-authenticate',
  'auth/scope-from-scopes-supported',
  'auth/scope-omitted-when-undefined',
  'auth/scope-step-up',
  'auth/scope-retry-limit',
  'auth/token-endpoint-auth-basic',
  'auth/token-endpoint-auth-post',
  'auth/token-endpoint-auth-none',
  'auth/pre-registration',
  'auth/2025-03-26-oauth-metadata-backcompat',
  'auth/2025-03-26-oauth-endpoint-fallback',
  'auth/resource-mismatch',
  'auth/offline-access-scope',
  'auth/offline-access-not-supported',
  'auth/client-credentials-basic',
  'auth/client-credentials-jwt',
  'auth/cross-app-access-complete-flow',
  'initialize',
  'tools_call',
  'sse-retry',
]

/**
 * Client scenarios of the installed suite deliberately not run, with why (README "Standards").
 * The guard below fails when the suite gains a scenario that is in neither list.
 */
const NOT_RUN: Record<string, string> = {
  'elicitation-sep1034-client-defaults': 'the relay has no user at hand to accept a form; it refuses form elicitation (DESIGN.md §4)',
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'node_modules/@modelcontextprotocol/conformance/dist/index.js')
const DRIVER = fileURLToPath(new URL('./driver.ts', import.meta.url))
/** The runner splits this on spaces and runs it through a shell, appending the server URL. */
const DRIVER_COMMAND = `${process.execPath} --disable-warning=ExperimentalWarning ${DRIVER}`
/** Scenarios at once: each is two Node processes plus the scenario's servers, on a 2-core machine. */
const CONCURRENCY = 3
/** The runner's own bound on the driver, and ours on the runner. */
const DRIVER_TIMEOUT_MS = 30_000
const RUNNER_TIMEOUT_MS = 60_000

interface Check {
  id: string
  name: string
  description: string
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | string
  errorMessage?: string
}

interface ScenarioRun {
  exitCode: number | null
  output: string
  checks: Check[]
  driverStderr: string
}

let outputRoot: string
const runs = new Map<string, Promise<ScenarioRun>>()

beforeAll(async () => {
  outputRoot = await mkdtemp(join(tmpdir(), 'relay-conformance-'))
  // A small pool: start every scenario now, at most CONCURRENCY at a time; each test awaits its own.
  const queue = [...SCENARIOS]
  const slots = Array.from({ length: CONCURRENCY }, async () => {
    for (let scenario = queue.shift(); scenario !== undefined; scenario = queue.shift()) {
      const run = runScenario(scenario)
      runs.set(scenario, run)
      await run.catch(() => undefined) // the test for this scenario reports the failure
    }
  })
  // Not awaited: the tests below start as soon as their scenario is done.
  void Promise.all(slots)
})

afterAll(async () => {
  await Promise.all(runs.values()).catch(() => undefined) // already reported by the tests
  if (outputRoot) await rm(outputRoot, { recursive: true, force: true })
})

describe('MCP conformance suite 0.1.16, client scenarios, through the relay', () => {
  it('runs every client scenario of the installed suite, or says why not', async () => {
    const listed = await runCli(['list', '--client'], 15_000)
    const all = [...listed.output.matchAll(/^\s+- (\S+) \[([^\]]+)\]$/gm)].map(([, name]) => name!)
    expect(all.length).toBeGreaterThanOrEqual(SCENARIOS.length + Object.keys(NOT_RUN).length)
    expect([...SCENARIOS, ...Object.keys(NOT_RUN)].sort()).toEqual([...all].sort())
  })

  it.each(SCENARIOS)('%s passes with no failure and no warning', async (scenario) => {
    const run = await scenarioRun(scenario)
    const failed = run.checks.filter((check) => check.status === 'FAILURE' || check.status === 'WARNING')
    const diagnosis = { failed, output: run.output.slice(-2000), driverStderr: run.driverStderr.slice(-3000) }
    expect(failed, JSON.stringify(diagnosis, null, 2)).toEqual([])
    expect(run.checks.some((check) => check.status === 'SUCCESS'), JSON.stringify(diagnosis, null, 2)).toBe(true)
    expect(run.output, JSON.stringify(diagnosis, null, 2)).toContain('OVERALL: PASSED')
    expect(run.exitCode).toBe(0)
  }, RUNNER_TIMEOUT_MS * Math.ceil(SCENARIOS.length / CONCURRENCY))
})

async function scenarioRun(scenario: string): Promise<ScenarioRun> {
  // beforeAll starts scenarios in order; a test may begin before its scenario has been queued.
  const giveUpAt = Date.now() + RUNNER_TIMEOUT_MS
  while (!runs.has(scenario)) {
    if (Date.now() > giveUpAt) throw new Error(`scenario ${scenario} was never started`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return runs.get(scenario)!
}

async function runScenario(scenario: string): Promise<ScenarioRun> {
  const outputDir = join(outputRoot, scenario.replace(/\W+/g, '-'))
  const result = await runCli(
    ['client', '--command', DRIVER_COMMAND, '--scenario', scenario, '--timeout', String(DRIVER_TIMEOUT_MS), '-o', outputDir],
    RUNNER_TIMEOUT_MS,
  )
  // The runner writes <outputDir>/<scenario>-<timestamp>/{checks.json,stdout.txt,stderr.txt}.
  const files = (await readdir(outputDir, { recursive: true }).catch(() => [] as string[])).map(String)
  const checksFile = files.find((file) => file.endsWith('checks.json'))
  const stderrFile = files.find((file) => file.endsWith('stderr.txt'))
  return {
    exitCode: result.exitCode,
    output: result.output,
    checks: checksFile ? (JSON.parse(await readFile(join(outputDir, checksFile), 'utf8')) as Check[]) : [],
    driverStderr: stderrFile ? await readFile(join(outputDir, stderrFile), 'utf8') : '',
  }
}

function runCli(args: string[], timeoutMs: number): Promise<{ exitCode: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    const timer = setTimeout(() => {
      output += `\n[test] the runner did not finish within ${timeoutMs} ms; killed`
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.on('close', (exitCode) => {
      clearTimeout(timer)
      resolve({ exitCode, output })
    })
  })
}
