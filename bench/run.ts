// npm run bench: the relay's warm path against the floor (an SDK client calling the upstream
// directly) and the plugin's design (a new client per call), for both MCP eras, all on loopback.
// Each server runs in its own process: the 2025-era SDK upstream, the 2026-07-28 upstreams, the
// relay (as `npm start` runs it), optionally the relay of another checkout, and, for (E), a bare
// Fastify route.
//
// 2025-era server (SDK 1.x, sessions, open):
//   (A) call-tool through the relay          (B) the same tool on one pooled SDK 1.x Client (floor)
//   (C) a new SDK Client per call            (D) list-tools from the relay's cache
//   (E) a bare Fastify route answering D's JSON
//   (F) a cold first call: each call a new user, so the relay opens a session for it
//   (P) A on the relay of BENCH_BEFORE_TREE (a checkout of an earlier commit), when given
// 2026-07-28 server (SDK 2.x, stateless, each user's bearer token):
//   (G) call-tool through the relay          (H) the same tool on one SDK 2.x Client (floor)
//   (K) a cold call: each call a new user, tools/list with the SDK's default hints (per user)
//   (L) a cold call to a server whose tools/list is cacheScope public
//
// Then A, P, B, G, H at concurrency 1 (the relay's added latency), and the relay's RSS after
// 1,000 users have one pooled 2025-era session each. 10,000-user steps on the 2026-07-28 server
// are bench/memory.ts (npm run bench:memory). Runs compared with each other are measured in
// turn, in BENCH_ROUNDS slices each. Tunable: BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_SESSIONS,
// BENCH_SETTLE_SECONDS, BENCH_ROUNDS, BENCH_RUNS, BENCH_BEFORE_TREE.
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { freePort } from '../test/support/free-port.ts'
import { mintAccessToken } from './access-tokens.ts'
import {
  ask,
  callThroughRelay,
  check,
  cpuOf,
  figuresOf,
  forkChild,
  loadAverage,
  mb,
  measure,
  memoryOf,
  message,
  postJson,
  printMachine,
  printTable,
  relayEnv,
  rssOf,
  runSlice,
  seedTokens,
  sleep,
  startRelay,
  stopChild,
  stopChildren,
  waitUntilReady,
  type Figures,
  type RelayMemory,
  type Slice,
} from './harness.ts'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 1000)
/** How long the relay holding the sessions stays idle before its RSS is read. */
const SETTLE_SECONDS = Number(process.env.BENCH_SETTLE_SECONDS ?? 30)
const WARMUP = Math.min(500, REQUESTS)
const SERIAL = Math.min(1000, REQUESTS)
/** New users for each cold-call run (F, K, L); F's keep a pooled session afterwards. */
const COLD = Math.min(200, REQUESTS)
/** Each run is measured in this many slices, in turn with the runs it is compared with. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
/**
 * A checkout of the relay at an earlier commit (its own `npm ci` done), run beside this one
 * against the same 2025-era upstream: runs P and P1.
 */
const BEFORE_TREE = process.env.BENCH_BEFORE_TREE
/** Which runs to make, e.g. BENCH_RUNS=A,D for profiling (A P B C D E G H A1 P1 B1 G1 H1 F K L RSS); default all. */
const ONLY = process.env.BENCH_RUNS ? new Set(process.env.BENCH_RUNS.split(',').map((run) => run.trim())) : undefined
/** The user of the warm 2026-07-28 runs: one whose token is in the relay's store. */
const WARM_USER = 'warm-0'

const workDir = mkdtempSync(join(tmpdir(), 'relay-bench-'))

try {
  await main()
} finally {
  await stopChildren()
  rmSync(workDir, { recursive: true, force: true })
}

interface ModernCounters {
  [serverId: string]: { requests: number; byMethod: Record<string, number> }
}

async function main(): Promise<void> {
  printMachine(
    `npm run bench\nrequests per run: ${REQUESTS}, concurrency: ${CONCURRENCY}; A1 P1 B1 G1 H1: ${SERIAL} at concurrency 1; cold calls: ${COLD}; sessions: ${SESSIONS}` +
      (BEFORE_TREE ? `; P: the relay of ${BEFORE_TREE}` : ''),
  )
  const upstream = forkChild('bench/upstream.ts')
  const { url: upstreamUrl } = await message<{ url: string }>(upstream, 'ready')
  // The key of the bench's authorization server: the 2026-07-28 upstreams check tokens against it.
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const modern = forkChild('bench/modern-upstream.ts', { publicJwk: publicKey.export({ format: 'jwk' }) })
  const { issuer, urls } = await message<{ issuer: string; urls: Record<'modern' | 'modern-public', string> }>(modern, 'ready')
  const modernCounters = () => ask<{ counters: ModernCounters }>(modern, 'counters').then((reply) => reply.counters)

  const relayPort = await freePort()
  const relayLog = join(workDir, 'relay.log')
  const servers = [
    { server_id: 'echo', description: 'Bench upstream, 2025-era', mcp_url: upstreamUrl },
    { server_id: 'modern', description: 'Bench upstream, 2026-07-28, SDK default list hints', mcp_url: urls.modern },
    { server_id: 'modern-public', description: 'Bench upstream, 2026-07-28, public list', mcp_url: urls['modern-public'] },
  ]
  const env = relayEnv({ port: relayPort, servers, storePath: join(workDir, 'relay.sqlite') })
  // Each 2026-07-28 user has signed in: a token in the relay's store, as a sign-in leaves it.
  const seeded = await seedTokens({
    env,
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    issuer,
    grants: [
      { serverId: 'modern', resource: urls.modern, prefix: 'warm-', from: 0, to: 1 },
      { serverId: 'modern-public', resource: urls['modern-public'], prefix: 'warm-', from: 0, to: 1 },
      { serverId: 'modern', resource: urls.modern, prefix: 'cold-k-', from: 0, to: COLD },
      { serverId: 'modern-public', resource: urls['modern-public'], prefix: 'cold-l-', from: 0, to: COLD },
    ],
  })
  console.log(`${seeded.count} users' tokens written into the relay's store in ${seeded.seconds.toFixed(1)} s\n`)
  const relay = startRelay(env, { workDir, logPath: relayLog })
  await waitUntilReady(relayPort, relay, relayLog)

  let before: { port: number; relay: ReturnType<typeof startRelay> } | undefined
  if (BEFORE_TREE) {
    const port = await freePort()
    const beforeEnv = relayEnv({ port, servers: servers.slice(0, 1), storePath: join(workDir, 'before.sqlite') })
    const beforeRelay = startRelay(beforeEnv, { workDir, logPath: relayLog, tree: BEFORE_TREE })
    await waitUntilReady(port, beforeRelay, relayLog)
    before = { port, relay: beforeRelay }
  }

  const memoryAtStart = await memoryOf(relayPort)
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY })
  const post = (port: number, path: string, body: unknown) => postJson(agent, port, path, body)
  const callTool = (userId: string, text: string, port = relayPort) => callThroughRelay(agent, port, userId, 'echo::echo', text)
  const callModern = (userId: string, text: string, serverId = 'modern') => callThroughRelay(agent, relayPort, userId, `${serverId}::echo`, text)
  const listTools = async () => {
    const answer = await post(relayPort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
    if (answer.status !== 200 || !answer.text.includes('"source":"cache"')) throw new Error(`list-tools answered ${answer.status}: ${answer.text}`)
    return answer.text
  }

  const direct = new Client({ name: 'bench-direct', version: '1.0.0' })
  await direct.connect(new StreamableHTTPClientTransport(new URL(upstreamUrl)))
  const directCall = async (text: string) => {
    const result = await direct.callTool({ name: 'echo', arguments: { text } })
    if (result.isError) throw new Error(`direct call failed: ${JSON.stringify(result)}`)
  }
  // The plugin's design: a new client (and session) per call, ended as its context manager does.
  const freshCall = async (text: string) => {
    const client = new Client({ name: 'bench-per-call', version: '1.0.0' })
    const transport = new StreamableHTTPClientTransport(new URL(upstreamUrl))
    await client.connect(transport)
    await client.callTool({ name: 'echo', arguments: { text } })
    await transport.terminateSession()
    await client.close()
  }

  // Warm-up: JIT, keep-alive sockets, the pooled session, the cached list (an open server's list
  // is cached once the relay knows it is open: the second list-tools fills the cache).
  await post(relayPort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
  await post(relayPort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
  const listJson = await listTools()
  const bare = forkChild('bench/bare-route.ts')
  bare.send({ body: JSON.parse(listJson) })
  const { port: barePort } = await message<{ port: number }>(bare, 'ready')
  const bareList = async () => {
    const answer = await post(barePort, '/tools/list-tools', { user_id: 'bench', server_id: 'echo' })
    if (answer.status !== 200 || answer.text.length !== listJson.length) throw new Error(`bare route answered ${answer.status}`)
  }
  // The relay's first calls to the 2026-07-28 servers: the only probes it should ever send them.
  await measure('warm-up', CONCURRENCY, WARMUP, (i) => callModern(WARM_USER, `w${i}`))
  await measure('warm-up', CONCURRENCY, Math.min(WARMUP, 100), (i) => callModern(WARM_USER, `w${i}`, 'modern-public'))
  const relayProbes = await modernCounters()

  // The floor for 2026-07-28: the SDK 2.x client, negotiating as the relay does, with a user's token.
  const directToken = await mintAccessToken(privateKey, { issuer, audience: urls.modern, subject: 'direct', scope: 'mcp:read mcp:write', expiresAt: Date.now() + 86_400_000 })
  const directV2 = new ClientV2({ name: 'bench-direct', version: '2.0.0' }, { versionNegotiation: { mode: 'auto' } })
  await directV2.connect(new TransportV2(new URL(urls.modern), { requestInit: { headers: { authorization: `Bearer ${directToken}` } } }))
  const directProbes = ((await modernCounters()).modern!.byMethod['server/discover'] ?? 0) - (relayProbes.modern!.byMethod['server/discover'] ?? 0)
  if (directV2.getProtocolEra() !== 'modern') throw new Error('the SDK 2.x client did not negotiate 2026-07-28 with the modern upstream')
  const directModernCall = async (text: string) => {
    const result = await directV2.callTool({ name: 'echo', arguments: { text } })
    if (result.isError) throw new Error(`direct 2026-07-28 call failed: ${JSON.stringify(result)}`)
  }

  await measure('warm-up', CONCURRENCY, WARMUP, (i) => callTool('bench', `w${i}`))
  if (before) await measure('warm-up', CONCURRENCY, WARMUP, (i) => callTool('bench', `w${i}`, before.port))
  await measure('warm-up', CONCURRENCY, WARMUP, (i) => directCall(`w${i}`))
  await measure('warm-up', CONCURRENCY, WARMUP, (i) => directModernCall(`w${i}`))
  await measure('warm-up', CONCURRENCY, Math.min(WARMUP, 100), (i) => freshCall(`w${i}`))
  await measure('warm-up', CONCURRENCY, WARMUP, () => listTools())
  await measure('warm-up', CONCURRENCY, WARMUP, () => bareList())
  const initializeBefore = (await counters(upstream)).initialize

  /** Where a run's requests end up: the process serving them upstream, and its HTTP request count. */
  type Upstream = { process: typeof upstream; requests: () => Promise<number>; methods?: () => Promise<Record<string, number>> }
  const legacyUpstream: Upstream = { process: upstream, requests: async () => (await counters(upstream)).requests }
  const modernUpstream = (serverId: 'modern' | 'modern-public'): Upstream => ({
    process: modern,
    requests: async () => (await modernCounters())[serverId]!.requests,
    methods: async () => (await modernCounters())[serverId]!.byMethod,
  })
  type Run = [key: string, label: string, concurrency: number, requests: number, server: typeof relay | undefined, to: Upstream, task: (i: number) => Promise<unknown>]
  const runs: Run[] = [
    ['A', 'A  call-tool via relay (2025)', CONCURRENCY, REQUESTS, relay, legacyUpstream, (i) => callTool('bench', `a${i}`)],
    ...(before ? [['P', 'P  A on the relay before', CONCURRENCY, REQUESTS, before.relay, legacyUpstream, (i: number) => callTool('bench', `p${i}`, before.port)] as Run] : []),
    ['B', 'B  pooled SDK 1.x client (floor)', CONCURRENCY, REQUESTS, undefined, legacyUpstream, (i) => directCall(`b${i}`)],
    ['G', 'G  call-tool via relay (2026-07-28)', CONCURRENCY, REQUESTS, relay, modernUpstream('modern'), (i) => callModern(WARM_USER, `g${i}`)],
    ['H', 'H  SDK 2.x client (floor, 2026-07-28)', CONCURRENCY, REQUESTS, undefined, modernUpstream('modern'), (i) => directModernCall(`h${i}`)],
    ['C', 'C  new SDK client per call', CONCURRENCY, REQUESTS, undefined, legacyUpstream, (i) => freshCall(`c${i}`)],
    ['D', 'D  list-tools (cache)', CONCURRENCY, REQUESTS, relay, legacyUpstream, () => listTools()],
    ['E', 'E  bare Fastify route', CONCURRENCY, REQUESTS, bare, legacyUpstream, () => bareList()],
    ['A1', 'A1 call-tool via relay (2025)', 1, SERIAL, relay, legacyUpstream, (i) => callTool('bench', `s${i}`)],
    ...(before ? [['P1', 'P1 A1 on the relay before', 1, SERIAL, before.relay, legacyUpstream, (i: number) => callTool('bench', `s${i}`, before.port)] as Run] : []),
    ['B1', 'B1 pooled SDK 1.x client', 1, SERIAL, undefined, legacyUpstream, (i) => directCall(`s${i}`)],
    ['G1', 'G1 call-tool via relay (2026-07-28)', 1, SERIAL, relay, modernUpstream('modern'), (i) => callModern(WARM_USER, `s${i}`)],
    ['H1', 'H1 SDK 2.x client (2026-07-28)', 1, SERIAL, undefined, modernUpstream('modern'), (i) => directModernCall(`s${i}`)],
    // Each a new user on the server the relay already knows is open: a session is opened first.
    ['F', 'F  cold call via relay (2025)', 1, COLD, relay, legacyUpstream, (i) => callTool(`cold-${i}`, `f${i}`)],
    // Each a new, signed-in user of a server whose revision the relay already knows.
    ['K', 'K  cold call (2026, private list)', 1, COLD, relay, modernUpstream('modern'), (i) => callModern(`cold-k-${i}`, `k${i}`)],
    ['L', 'L  cold call (2026, public list)', 1, COLD, relay, modernUpstream('modern-public'), (i) => callModern(`cold-l-${i}`, `l${i}`, 'modern-public')],
  ]
  // Runs that are compared with each other are measured in turn, a slice of each per round, so
  // that the load others put on the machine (it drifts by minutes) falls on each alike.
  const groups = [['A', 'P', 'B', 'G', 'H'], ['C'], ['D', 'E'], ['A1', 'P1', 'B1', 'G1', 'H1'], ['F', 'K', 'L']]
  /** Per run: its slices, the CPU seconds of the process serving it and of the upstream, upstream requests, and POSTs by method. */
  const tallies = new Map<string, { slices: Slice[]; serverCpu: number; upstreamCpu: number; upstreamRequests: number; methods: Record<string, number> }>()
  for (const group of groups) {
    for (let round = 0; round < ROUNDS; round++) {
      for (const [key, , concurrency, requests, server, to, task] of runs.filter((run) => group.includes(run[0]) && (!ONLY || ONLY.has(run[0])))) {
        const tally = tallies.get(key) ?? { slices: [], serverCpu: 0, upstreamCpu: 0, upstreamRequests: 0, methods: {} }
        tallies.set(key, tally)
        const from = Math.floor((requests * round) / ROUNDS)
        const count = Math.floor((requests * (round + 1)) / ROUNDS) - from
        const serverCpu = server && cpuOf(server)
        const upstreamCpu = cpuOf(to.process)
        const requestsBefore = await to.requests()
        const methodsBefore = await to.methods?.()
        tally.slices.push(await runSlice(concurrency, from, count, task))
        if (server) tally.serverCpu += cpuOf(server) - serverCpu!
        tally.upstreamCpu += cpuOf(to.process) - upstreamCpu
        tally.upstreamRequests += (await to.requests()) - requestsBefore
        if (to.methods && methodsBefore) {
          for (const [method, n] of Object.entries(await to.methods())) tally.methods[method] = (tally.methods[method] ?? 0) + n - (methodsBefore[method] ?? 0)
        }
      }
    }
  }
  const results = new Map<string, Figures>()
  /** HTTP requests the upstream received per request of a run (a 2025 session's GET streams included). */
  const upstreamRequests = new Map<string, number>()
  /** For runs against a 2026-07-28 server: its POSTs per request of the run, by JSON-RPC method. */
  const upstreamMethods = new Map<string, Record<string, number>>()
  for (const [key, label, concurrency, requests, server] of runs) {
    const tally = tallies.get(key)
    if (!tally) continue
    const figures = figuresOf(label, concurrency, tally.slices)
    figures.serverCpuUs = server && (tally.serverCpu / requests) * 1e6
    figures.upstreamCpuUs = (tally.upstreamCpu / requests) * 1e6
    results.set(key, figures)
    upstreamRequests.set(key, tally.upstreamRequests / requests)
    upstreamMethods.set(key, Object.fromEntries(Object.entries(tally.methods).filter(([, n]) => n !== 0).map(([method, n]) => [method, n / requests])))
  }
  const afterRuns = await counters(upstream)
  const modernAfterRuns = await modernCounters()
  // End the direct session upstream too, so the session count below is the relay's alone.
  await (direct.transport as StreamableHTTPClientTransport).terminateSession()
  await direct.close()
  await directV2.close()
  printTable([...results.values()])

  const targets: string[] = []
  const { A: a, P: p, B: b, C: c, D: d, E: e, G: g, H: h, A1: a1, P1: p1, B1: b1, G1: g1, H1: h1, F: f, K: k, L: l } = Object.fromEntries(results)
  if (a && b) targets.push(check('A p50 / B p50 (2025, concurrency 16)', a.p50 / b.p50, '≤ 1.5', a.p50 / b.p50 <= 1.5))
  if (p && b) targets.push(check('P p50 / B p50 (2025, the relay before)', p.p50 / b.p50, '(info)', true))
  if (a && p) targets.push(check('A / P relay CPU per call (now / before)', a.serverCpuUs! / p.serverCpuUs!, '(info)', true))
  if (g && h) targets.push(check('G p50 / H p50 (2026-07-28, concurrency 16)', g.p50 / h.p50, '(info)', true))
  if (g && h) targets.push(check('G relay CPU / H client CPU per call', g.serverCpuUs! / h.clientCpuUs, '(info)', true))
  if (g && a) targets.push(check('G / A relay CPU per call (2026-07-28 / 2025)', g.serverCpuUs! / a.serverCpuUs!, '(info)', true))
  if (a && c) targets.push(check('A throughput / C throughput', a.rps / c.rps, '≥ 4', a.rps >= 4 * c.rps))
  if (d && e) targets.push(check('D throughput / E throughput', d.rps / e.rps, '≥ 0.7', d.rps >= 0.7 * e.rps))
  if (a1 && b1) console.log(`\nRelay's added latency at concurrency 1, 2025 (A1 p50 − B1 p50): ${(a1.p50 - b1.p50).toFixed(3)} ms`)
  if (p1 && b1) console.log(`The relay before, 2025 (P1 p50 − B1 p50): ${(p1.p50 - b1.p50).toFixed(3)} ms`)
  if (g1 && h1) console.log(`Relay's added latency at concurrency 1, 2026-07-28 (G1 p50 − H1 p50): ${(g1.p50 - h1.p50).toFixed(3)} ms`)
  if (a1 && f) {
    console.log(`Cold call (F) against a warm one (A1), 2025: p50 ${f.p50.toFixed(3)} − ${a1.p50.toFixed(3)} = ${(f.p50 - a1.p50).toFixed(3)} ms; ` +
      `upstream HTTP requests per call ${upstreamRequests.get('F')!.toFixed(2)} against ${upstreamRequests.get('A1')!.toFixed(2)}`)
  }
  for (const [key, cold] of [['K', k], ['L', l]] as const) {
    if (!cold) continue
    const warm = g1 ? `; a warm one (G1) ${upstreamRequests.get('G1')!.toFixed(2)} (${perMethod(upstreamMethods.get('G1')!)})` : ''
    console.log(`Cold call (${key}), 2026-07-28: p50 ${cold.p50.toFixed(3)} ms; upstream HTTP requests per call ${upstreamRequests.get(key)!.toFixed(2)} (${perMethod(upstreamMethods.get(key)!)})${warm}`)
    targets.push(check(`${key}: upstream HTTP requests per cold call (2026-07-28)`, upstreamRequests.get(key)!, '≤ 1', upstreamRequests.get(key)! <= 1))
  }
  for (const serverId of ['modern', 'modern-public']) {
    const probes = relayProbes[serverId]!.byMethod['server/discover'] ?? 0
    const later = (modernAfterRuns[serverId]!.byMethod['server/discover'] ?? 0) - probes - (serverId === 'modern' ? directProbes : 0)
    console.log(`Probes (server/discover) the relay sent ${serverId}: ${probes} at its first calls, ${later} after`)
    targets.push(check(`probes of ${serverId} per relay process`, probes + later, '≤ 1', probes + later <= 1))
  }
  // C and F open one session per call; A and B none: the relay's session stays pooled throughout.
  console.log(`Sessions the relay re-initialized during the runs (should be 0): ${afterRuns.initialize - initializeBefore - (c?.requests ?? 0) - (f?.requests ?? 0)}`)

  if (!ONLY || ONLY.has('RSS')) {
    // A fresh relay, so the figure is what 1,000 pooled sessions cost and not what the runs above
    // left in V8's heap (it does not hand memory back promptly); the relay before too, if given.
    const memoryAfterRuns = await memoryOf(relayPort)
    await stopChild(relay)
    if (before) await stopChild(before.relay)
    const rows: Array<[string, RelayMemory]> = [
      ['relay of the runs, at start', memoryAtStart],
      ['relay of the runs, after them', memoryAfterRuns],
    ]
    const traces: string[] = []
    for (const [name, tree] of [['fresh relay', undefined], ...(BEFORE_TREE ? [['fresh relay before', BEFORE_TREE]] : [])] as const) {
      const freshPort = await freePort()
      const fresh = startRelay(relayEnv({ port: freshPort, servers: servers.slice(0, 1), storePath: join(workDir, `${name.replaceAll(' ', '-')}.sqlite`) }), { workDir, logPath: relayLog, tree })
      await waitUntilReady(freshPort, fresh, relayLog)
      rows.push([`${name}, at start`, await memoryOf(freshPort)])
      const sessionsStarted = performance.now()
      await measure('sessions', CONCURRENCY, SESSIONS, (i) => callTool(`user-${i}`, `hello ${i}`, freshPort))
      const sessionsSeconds = (performance.now() - sessionsStarted) / 1000
      await sleep(500)
      const rssJustAfter = rssOf(fresh)
      const memoryJustAfter = await memoryOf(freshPort)
      // V8 keeps the young generation it grew during the burst, and the garbage it promoted, until
      // its memory reducer runs once allocation has been quiet for a while: sample for
      // SETTLE_SECONDS of idleness to see what holding the sessions costs.
      const trace: number[] = []
      let memorySettled = memoryJustAfter
      for (let second = 0; second < SETTLE_SECONDS; second++) {
        await sleep(1000)
        memorySettled = await memoryOf(freshPort)
        trace.push(memorySettled.rss)
      }
      const rssSettled = rssOf(fresh)
      const upstreamSessions = (await counters(upstream)).sessionsOpen
      await stopChild(fresh)
      console.log(`\n${name}: ${SESSIONS} users' sessions opened in ${sessionsSeconds.toFixed(1)} s; the upstream holds ${upstreamSessions} sessions`)
      rows.push([`${name}, ${SESSIONS} sessions, just opened`, memoryJustAfter], [`${name}, ${SESSIONS} sessions, ${SETTLE_SECONDS} s later`, memorySettled])
      traces.push(`RSS each second after opening (${name}), MB: ${trace.map((rss) => Math.round(rss / 1024 / 1024)).join(' ')}`)
      targets.push(check(`RSS with ${SESSIONS} pooled sessions, ${SETTLE_SECONDS} s idle (MB, ${name})`, rssSettled / 1024 / 1024, tree ? '(info)' : '≤ 200', rssSettled <= 200 * 1024 * 1024))
      targets.push(check(`RSS with ${SESSIONS} pooled sessions, just opened (MB, ${name})`, rssJustAfter / 1024 / 1024, '(info)', true))
    }
    console.log('| relay memory, MB | RSS | V8 heap total | heap used | new space | external |\n| --- | ---: | ---: | ---: | ---: | ---: |')
    for (const [when, m] of rows) console.log(`| ${when} | ${mb(m.rss)} | ${mb(m.heapTotal)} | ${mb(m.heapUsed)} | ${mb(m.newSpace)} | ${mb(m.external)} |`)
    for (const line of traces) console.log(line)
  }
  console.log(`\nload average at the end: ${loadAverage()}`)
  console.log('\n| target | measured | goal | met |\n| --- | --- | --- | --- |')
  for (const line of targets) console.log(line)
}

function perMethod(methods: Record<string, number>): string {
  return Object.entries(methods).map(([method, n]) => `${method} ${n.toFixed(2)}`).join(', ') || 'none'
}

async function counters(upstream: ReturnType<typeof forkChild>): Promise<{ initialize: number; requests: number; sessionsOpen: number }> {
  return (await ask<{ counters: { initialize: number; requests: number; sessionsOpen: number } }>(upstream, 'counters')).counters
}
