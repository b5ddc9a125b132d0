// Shared parts of the fault and hostile-input battery: raw requests to the real relay, the
// invariants every answer must keep, sign-in through the scripted browser, and the tallies each
// file prints (requests by status, faults tried) for the battery's report.
import { Writable } from 'node:stream'
import { expect } from 'vitest'
import { signInThroughBrowser } from '../peers/browser.ts'
import type { LoopStats, RelayProcess } from '../support/relay-process.ts'
import type { TestRelay } from '../support/relay.ts'

/** A relay in this process (TestRelay) or in its own (RelayProcess): what signIn and whoami use. */
export interface PostingRelay {
  url: string
  post(path: string, body: unknown, options?: { apiKey?: string }): Promise<{ status: number; body: any }>
}

export interface RawAnswer {
  status: number
  headers: Headers
  text: string
  /** The parsed body when it was JSON. */
  json: any
}

export interface RawRequest {
  method?: string
  path: string
  headers?: Record<string, string>
  body?: string | Uint8Array | ReadableStream<Uint8Array>
  /** Default 20 s: longer than any answer the relay may take in these tests. */
  timeoutMs?: number
}

/** One HTTP request to the relay exactly as given (no content type or key added). */
export async function send(relay: { url: string }, request: RawRequest): Promise<RawAnswer> {
  const init: RequestInit & { duplex?: 'half' } = {
    method: request.method ?? 'POST',
    headers: request.headers ?? {},
    redirect: 'manual',
    signal: AbortSignal.timeout(request.timeoutMs ?? 20_000),
  }
  if (request.body !== undefined) {
    init.body = request.body as RequestInit['body']
    if (request.body instanceof ReadableStream) init.duplex = 'half'
  }
  const response = await fetch(`${relay.url}${request.path}`, init)
  const text = await response.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: response.status, headers: response.headers, text, json }
}

export const ERROR_CODES = ['INVALID_INPUT', 'UNAUTHORIZED', 'UNKNOWN_SERVER', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'RATE_LIMITED', 'STORE_UNAVAILABLE']

/**
 * Paths whose answers are HTML pages for a browser, not JSON: the login link, and the callback,
 * plain or per authorization server (`/oauth/callback/<tag>`, src/oauth/redirect-uri.ts).
 */
export function isBrowserPath(path: string): boolean {
  return path.startsWith('/oauth/start/') || path === '/oauth/callback' || path.startsWith('/oauth/callback?') || path.startsWith('/oauth/callback/')
}

/** What a request may answer beyond DESIGN.md §4's 2xx/4xx. */
export interface Allowed {
  /**
   * A callback whose token request failed at the authorization server (5xx, unreachable, an
   * answer cut short): the page says so with 502 Bad Gateway (src/oauth/sign-in.ts, and
   * test/http/sign-in-routes.test.ts "shows a failure with the relay status (400 or 502)").
   */
  badGatewayPage?: boolean
}

/**
 * DESIGN.md §4: a wrong request gets 4xx with `{ error: { code, message } }` (an HTML page on the
 * browser routes), anything else 200 with a clear status; never 5xx. Returns what it checked.
 */
export function expectWellFormed(path: string, answer: RawAnswer, context = '', allowed: Allowed = {}): void {
  const where = `${path} ${context} → ${answer.status} ${answer.text.slice(0, 300)}`
  if (allowed.badGatewayPage && answer.status === 502 && isBrowserPath(path)) {
    expect(answer.headers.get('content-type'), where).toContain('text/html')
    return
  }
  expect(answer.status, where).toBeLessThan(500)
  expect(answer.status === 200 || answer.status === 302 || (answer.status >= 400 && answer.status < 500), where).toBe(true)
  if (isBrowserPath(path)) {
    if (answer.status === 302) return
    expect(answer.headers.get('content-type'), where).toContain('text/html')
    expect(answer.headers.get('content-security-policy'), where).toContain("default-src 'none'")
    return
  }
  if (answer.status >= 400) {
    expect(answer.json, where).toEqual({ error: { code: expect.any(String), message: expect.any(String) } })
    expect(ERROR_CODES, where).toContain(answer.json.error.code)
    expect(answer.json.error.message.length, where).toBeGreaterThan(0)
    // A stack trace or a library's own words are not an answer for a caller.
    expect(answer.json.error.message, where).not.toMatch(/\n\s+at |node_modules|Error:/)
  } else if (answer.status === 200 && answer.text !== '' && answer.headers.get('content-type')?.includes('json')) {
    expect(answer.json, where).toBeTypeOf('object')
  }
}

/** Requests and answers by status, and faults tried, for one battery file. */
export function createTally(name: string) {
  const byStatus = new Map<number, number>()
  const faults: string[] = []
  let requests = 0
  return {
    add(status: number): void {
      requests++
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1)
    },
    fault(description: string): void {
      faults.push(description)
    },
    get requests() {
      return requests
    },
    count(status: number): number {
      return byStatus.get(status) ?? 0
    },
    serverErrors(): number {
      return [...byStatus].filter(([status]) => status >= 500).reduce((sum, [, count]) => sum + count, 0)
    },
    /** One line the battery report collects: `[battery] <name> {...}`. */
    print(extra: Record<string, unknown> = {}): void {
      const statuses = Object.fromEntries([...byStatus].sort(([a], [b]) => a - b).map(([status, count]) => [status, count]))
      console.info(`[battery] ${name} ${JSON.stringify({ requests, statuses, faults: faults.length, ...extra })}`)
    },
  }
}

export type Tally = ReturnType<typeof createTally>

/** send() that counts the answer and checks it is well formed. */
export async function sendChecked(relay: { url: string }, tally: Tally, request: RawRequest, context = '', allowed: Allowed = {}): Promise<RawAnswer> {
  const answer = await send(relay, request)
  tally.add(answer.status)
  expectWellFormed(request.path, answer, context, allowed)
  return answer
}

/** Signs `userId` in to `serverId` as `account` through the scripted browser; returns the connected page. */
export async function signIn(
  relay: PostingRelay,
  userId: string,
  account: string,
  options: { apiKey?: string; serverId?: string } = {},
): Promise<{ status: number; html: string; headers: Headers; callbackUrl: string }> {
  const serverId = options.serverId ?? 'docs'
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: serverId, force_reauth: true }, options)
  expect(status.status, JSON.stringify(status.body)).toBe(200)
  const entry = status.body.servers[0]
  expect(entry.status, JSON.stringify(entry)).toBe('need_auth')
  const page = await signInThroughBrowser(entry.login_url, account)
  expect(page.status, page.html.slice(0, 300)).toBe(200)
  return page
}

/** The `sub` the upstream's whoami tool saw for this user's call, or the failed answer. */
export async function whoami(
  relay: PostingRelay,
  userId: string,
  options: { apiKey?: string; serverId?: string } = {},
): Promise<{ sub: string | null | undefined; body: any; status: number }> {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: `${options.serverId ?? 'docs'}::whoami`, input: {} }, options)
  return { sub: answer.body?.ok ? answer.body.result.structuredContent?.sub : undefined, body: answer.body, status: answer.status }
}

/**
 * Every answer the relays gave, by HTTP status, as their own request-duration histogram counted
 * them (so requests made by helpers such as signIn count too).
 */
export async function answeredByStatus(relays: Array<TestRelay | undefined>): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (const relay of relays) {
    const metric = relay?.registry.getSingleMetric('mcp_relay_http_request_duration_seconds')
    if (!metric) continue
    for (const value of (await metric.get()).values) {
      if (!('metricName' in value) || !String(value.metricName).endsWith('_count')) continue
      const status = String(value.labels.status_code)
      counts[status] = (counts[status] ?? 0) + value.value
    }
  }
  return counts
}

/** Every answer a relay process gave, by HTTP status, as its own GET /metrics counts them. */
export async function answeredByStatusOfProcess(relay: RelayProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${relay.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text()
  const counts: Record<string, number> = {}
  for (const [, status, count] of text.matchAll(/^mcp_relay_http_request_duration_seconds_count\{[^}]*status_code="(\d+)"[^}]*\} (\d+)$/gm)) {
    counts[status!] = (counts[status!] ?? 0) + Number(count)
  }
  return counts
}

/** Log lines written by pino, kept as text. */
export function captureLogLines(): { lines: string[]; stream: Writable } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      callback()
    },
  })
  return { lines, stream }
}

/** Resolves when `condition` holds, polling; throws after `limitMs`. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const started = Date.now()
  for (;;) {
    if (await condition()) return Date.now() - started
    if (Date.now() - started > limitMs) throw new Error(`${what}: not within ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * DESIGN.md §6 "nothing an upstream sends can stall the relay", as the battery checks it on a relay
 * process started with `loopProbe` (test/support/loop-probe.ts): while attacks run, GET /healthz is
 * asked every 50 ms and the relay's own loop is read every 100 ms. `since()` marks a point;
 * `expectHealthySince(mark)` (after one more read, so the window covers everything up to now)
 * asserts that every probe answered 200 and that the relay's event loop never went more than
 * `maxStallMs` of its own CPU time without coming back to its timers (the bound a health probe
 * waits behind; loop-probe.ts says why CPU time and not wall time). The wall times are kept for
 * the report.
 */
export function startHealthProbe(relay: RelayProcess, options: { maxStallMs: number }) {
  const reads: Array<{ at: number; stats: LoopStats }> = []
  const probes: Array<{ at: number; status: number | 'failed'; ms: number }> = []
  const checked: Array<{ what: string; stallMs: number }> = []
  let stopped = false
  let readCount = 0
  let readFailure: unknown

  const probeLoop = (async () => {
    while (!stopped) {
      const started = performance.now()
      let status: number | 'failed'
      try {
        const response = await fetch(`${relay.url}/healthz`, { signal: AbortSignal.timeout(5000) })
        await response.arrayBuffer()
        status = response.status
      } catch {
        status = 'failed'
      }
      probes.push({ at: Date.now(), status, ms: performance.now() - started })
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })()
  const readLoop = (async () => {
    // The first window holds the relay's start (loading its modules): not a stall of serving.
    await relay.loopStats()
    while (!stopped) {
      reads.push({ at: Date.now(), stats: await relay.loopStats() })
      readCount++
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })().catch((error: unknown) => {
    // The relay process went away: every later check says so.
    readFailure = error
  })

  /** Resolves after the next read of the relay's loop has arrived. */
  async function nextRead(): Promise<void> {
    const wanted = readCount + 1
    await waitUntil(() => readCount >= wanted || readFailure !== undefined, 10_000, 'a read of the relay loop')
    if (readFailure !== undefined) throw new Error(`the relay's loop could not be read: ${String(readFailure)}`)
  }

  return {
    since: () => Date.now(),
    async expectHealthySince(mark: number, what: string): Promise<void> {
      await nextRead()
      const window = reads.filter((read) => read.at >= mark)
      const worst = Math.max(0, ...window.map((read) => read.stats.maxBlockedCpuMs))
      checked.push({ what, stallMs: Math.round(worst) })
      expect(worst, `${what}: the relay's event loop was held for ${worst.toFixed(0)} ms of its own CPU time`).toBeLessThanOrEqual(options.maxStallMs)
      const failed = probes.filter((probe) => probe.at >= mark && probe.status !== 200)
      expect(failed, `${what}: /healthz did not answer 200`).toEqual([])
    },
    /** The worst figures over the whole run, for the report. */
    summary() {
      return {
        probes: probes.length,
        probeFailures: probes.filter((probe) => probe.status !== 200).length,
        maxProbeWallMs: Math.round(Math.max(0, ...probes.map((probe) => probe.ms))),
        loopReads: reads.length,
        maxStallCpuMs: Math.round(Math.max(0, ...reads.map((read) => read.stats.maxBlockedCpuMs))),
        maxLoopDelayWallMs: Math.round(Math.max(0, ...reads.map((read) => read.stats.maxDelayMs))),
        longestStalls: [...checked].sort((a, b) => b.stallMs - a.stallMs).slice(0, 3),
      }
    },
    async stop(): Promise<void> {
      stopped = true
      await Promise.all([probeLoop, readLoop])
    },
  }
}
