import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// The official MCP conformance suite (@modelcontextprotocol/conformance, pinned in package.json)
// runs each client scenario against test/conformance/driver.ts, which drives the relay through
// its own HTTP routes as Dify and a browser would. Each scenario runs at the wire of the
// requirement set that names it (`--spec-version W --force`, as `--requirements W` runs them: the
// 2025 revisions are the stateful initialize handshake, 2026-07-28 is stateless with per-request
// `_meta`, and a scenario in both sets runs once at each). Every run must end with no FAILURE and
// no WARNING check, no SKIPPED check but those named below, at least one SUCCESS, and the runner
// must report the scenario passed.

/** The scenarios run at each wire. */
const WIRES: Record<string, readonly string[]> = {
  // `list --client --requirements 2026-07-28`: the 32 required, then the not-scored ones run here.
  '2026-07-28': [
    'tools_call',
    'request-metadata',
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
    'auth/resource-mismatch',
    'auth/offline-access-scope',
    'auth/offline-access-not-supported',
    'auth/authorization-server-migration',
    'auth/iss-supported',
    'auth/iss-not-advertised',
    'auth/iss-supported-missing',
    'auth/iss-wrong-issuer',
    'auth/iss-unexpected',
    'auth/iss-normalized',
    'auth/metadata-issuer-mismatch',
    'sep-2322-client-request-state',
    'http-standard-headers',
    'http-custom-headers',
    'http-invalid-tool-headers',
    'json-schema-ref-no-deref',
    'auth/client-credentials-basic',
    'auth/client-credentials-jwt',
    'json-schema-2020-12-preservation',
    'auth/enterprise-managed-authorization',
    'auth/dpop',
    'auth/dpop-nonce',
    'auth/wif-jwt-bearer',
  ],
  // `list --client --requirements 2025-11-25`, elicitation defaults aside (NOT_RUN), then the not-scored ones.
  '2025-11-25': [
    'initialize',
    'tools_call',
    'sse-retry',
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
    'auth/client-credentials-basic',
    'auth/client-credentials-jwt',
    'json-schema-2020-12-preservation',
    'auth/enterprise-managed-authorization',
    'auth/dpop',
    'auth/dpop-nonce',
    'auth/wif-jwt-bearer',
  ],
  // In no requirement set: the 2025-03-26 authorization back-compatibility, at its own wire.
  '2025-03-26': ['auth/2025-03-26-oauth-metadata-backcompat', 'auth/2025-03-26-oauth-endpoint-fallback'],
}

const SKILLS =
  'skills extension (io.modelcontextprotocol/skills, SEP-2640): it checks how a host that loads skills lists them (skills/list) and verifies their files when it reads them; the relay relays tools only and never lists or loads skills, so every check would end SKIPPED or "not testable"'

/**
 * Client scenarios of the installed suite deliberately not run at any wire, with why (README
 * "Standards"). The guards below fail when the suite gains a client scenario, or a requirement
 * set names one, that is neither run at that wire nor here.
 */
const NOT_RUN: Record<string, string> = {
  'elicitation-sep1034-client-defaults':
    'its 2025-era server asks the client mid-call (elicitation/create) to accept a form with its defaults; a 2025-era session of the relay has no user at hand, declares no elicitation capability and refuses such requests with a message (DESIGN.md §4). Questions of a 2026-07-28 server go to the user through the chat: sep-2322-client-request-state',
  'sep-2640-client-no-prefetch': SKILLS,
  'sep-2640-client-verify-digest': SKILLS,
  'sep-2640-client-verify-size': SKILLS,
  'sep-2640-client-verify-frontmatter': SKILLS,
}

/**
 * Checks the suite reports SKIPPED because the relay never takes that path (it relays tools for
 * an agent), by scenario, with why. Any other SKIPPED check fails the run: a check the relay used
 * to pass must not quietly stop being exercised.
 */
const SKIPPED: Record<string, { why: string; checks: string[] }> = {
  'http-standard-headers': {
    why: 'methods the relay never sends: no initialize at the 2026-07-28 wire, no resources, no prompts',
    checks: [
      'ClientMcpMethodHeader_initialize',
      'ClientMcpMethodHeader_notifications_initialized',
      'ClientMcpMethodHeader_resources_list',
      'ClientMcpMethodHeader_resources_read',
      'ClientMcpMethodHeader_prompts_list',
      'ClientMcpMethodHeader_prompts_get',
      'ClientMcpNameHeader_resources_read',
      'ClientMcpNameHeader_prompts_get',
    ],
  },
  'request-metadata': {
    why: 'capabilities the relay never declares: it has no roots and no model (DESIGN.md §4)',
    checks: ['ClientDeclaresRootsCapability', 'ClientDeclaresSamplingCapability'],
  },
}

const RUNS = Object.entries(WIRES).flatMap(([wire, scenarios]) => scenarios.map((scenario) => ({ scenario, wire })))

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'node_modules/@modelcontextprotocol/conformance/dist/index.js')
const DRIVER = fileURLToPath(new URL('./driver.ts', import.meta.url))
/** The runner splits this on spaces and runs it through a shell, appending the server URL. */
const DRIVER_COMMAND = `${process.execPath} --disable-warning=ExperimentalWarning ${DRIVER}`
/**
 * Scenarios at once: each is two Node processes plus the scenario's servers, and spends part of
 * its time waiting on them; more than this on two cores only makes every run slower.
 */
const CONCURRENCY = 4
/** The runner's own bound on the driver (which gives up itself a little later), and ours on the runner. */
const DRIVER_TIMEOUT_MS = 60_000
const RUNNER_TIMEOUT_MS = 90_000

interface Check {
  id: string
  name: string
  description: string
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'INFO' | 'SKIPPED' | string
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
  // Every run starts now, CONCURRENCY at a time; each test awaits its own.
  const slots = createSlots(CONCURRENCY)
  for (const run of RUNS) {
    const started = slots(() => runScenario(run.scenario, run.wire))
    started.catch(() => undefined) // the test for this run reports the failure
    runs.set(keyOf(run.scenario, run.wire), started)
  }
})

afterAll(async () => {
  // Runs still going when a test gave up are bounded by the runner timeout.
  await Promise.allSettled(runs.values())
  if (outputRoot) await rm(outputRoot, { recursive: true, force: true })
}, RUNNER_TIMEOUT_MS * Math.ceil(RUNS.length / CONCURRENCY))

describe('MCP conformance suite, client scenarios, through the relay', () => {
  it('runs every client scenario of the installed suite, or says why not', async () => {
    const listed = await runCli(['list', '--client'], RUNNER_TIMEOUT_MS)
    const all = [...listed.output.matchAll(/^\s+- (\S+) \[[^\]]+\]$/gm)].map(([, name]) => name!)
    expect(all.length, listed.output).toBeGreaterThan(0)
    const named = new Set([...RUNS.map((run) => run.scenario), ...Object.keys(NOT_RUN)])
    expect([...named].sort()).toEqual([...new Set(all)].sort())
    expect(RUNS.filter((run) => run.scenario in NOT_RUN)).toEqual([])
  }, RUNNER_TIMEOUT_MS)

  it.each(['2025-11-25', '2026-07-28'])('runs every client scenario of the %s requirement set at its wire, or says why not', async (revision) => {
    const listed = await runCli(['list', '--client', '--requirements', revision], RUNNER_TIMEOUT_MS)
    const required = listed.output.split(/^Client scenarios.*:$/m)[1]?.split(/^\S.*$/m)[0] ?? ''
    const names = [...required.matchAll(/^\s+- (\S+)$/gm), ...listed.output.matchAll(/^\s+- (\S+) \[client\]$/gm)].map(([, name]) => name!)
    expect(names.length, listed.output).toBeGreaterThan(0)
    expect(names.filter((name) => !WIRES[revision]!.includes(name) && !(name in NOT_RUN))).toEqual([])
  }, RUNNER_TIMEOUT_MS)

  it.each(RUNS)('$scenario at the $wire wire passes with no failure and no warning', async ({ scenario, wire }) => {
    const run = await runs.get(keyOf(scenario, wire))!
    const failed = run.checks.filter((check) => check.status === 'FAILURE' || check.status === 'WARNING')
    const diagnosis = JSON.stringify({ failed, output: run.output.slice(-2000), driverStderr: run.driverStderr.slice(-3000) }, null, 2)
    expect(failed, diagnosis).toEqual([])
    const skipped = run.checks.filter((check) => check.status === 'SKIPPED').map((check) => check.name)
    expect(skipped.sort(), diagnosis).toEqual([...(SKIPPED[scenario]?.checks ?? [])].sort())
    expect(run.checks.some((check) => check.status === 'SUCCESS'), diagnosis).toBe(true)
    expect(run.output, diagnosis).toContain('OVERALL: PASSED')
    expect(run.exitCode, diagnosis).toBe(0)
  }, RUNNER_TIMEOUT_MS * Math.ceil(RUNS.length / CONCURRENCY))
})

function keyOf(scenario: string, wire: string): string {
  return `${wire} ${scenario}`
}

/** Runs at most `size` jobs at a time, in the order they were handed in. */
function createSlots(size: number): <T>(job: () => Promise<T>) => Promise<T> {
  let running = 0
  const waiting: Array<() => void> = []
  return async (job) => {
    if (running === size) await new Promise<void>((resolve) => waiting.push(resolve))
    else running++
    try {
      return await job()
    } finally {
      // The slot passes straight to the next job in line, or is freed.
      const next = waiting.shift()
      if (next) next()
      else running--
    }
  }
}

async function runScenario(scenario: string, wire: string): Promise<ScenarioRun> {
  const outputDir = join(outputRoot, wire, scenario.replace(/\W+/g, '-'))
  const result = await runCli(
    [
      'client',
      '--command',
      DRIVER_COMMAND,
      '--scenario',
      scenario,
      // `--force`: as `--requirements` does, the set (or, for 2025-03-26, the tag) decides where it runs.
      '--spec-version',
      wire,
      '--force',
      '--timeout',
      String(DRIVER_TIMEOUT_MS),
      '-o',
      outputDir,
    ],
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
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Every run starts a runner and a driver that load the same modules: V8's compile cache
      // (Node 22.1+, shared by all of them) about halves the driver's start-up work.
      env: { ...process.env, NODE_COMPILE_CACHE: join(outputRoot, 'compile-cache') },
    })
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
