// deploy/grafana/mcp-auth-relay.json against a live relay: every PromQL expression in it names only
// metrics that src/main.ts really exports on /metrics (a renamed metric would leave a panel empty
// without a word), and it covers every metric the relay itself defines.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelayProcess, type RelayProcess } from '../support/relay-process.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const dashboard = JSON.parse(readFileSync(resolve(ROOT, 'deploy/grafana/mcp-auth-relay.json'), 'utf8')) as Dashboard

interface Target { expr: string; datasource?: { uid?: string } }
interface Panel { id: number; type: string; title: string; datasource?: { uid?: string }; targets?: Target[]; panels?: Panel[] }
interface Variable { name: string; type: string; query: unknown; datasource?: { uid?: string } }
interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: Variable[] } }

const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])])
const queryPanels = allPanels(dashboard.panels).filter((panel) => panel.type !== 'row')

/** Every PromQL expression: the panels' targets and the query variables' label_values(). */
function expressions(): string[] {
  const fromPanels = queryPanels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr))
  const fromVariables = dashboard.templating.list
    .filter((variable) => variable.type === 'query')
    .map((variable) => (variable.query as { query: string }).query)
  return [...fromPanels, ...fromVariables]
}

// PromQL words that are not metric names: aggregations, functions are followed by '(' anyway.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan'])

/**
 * The metric names an expression selects: what is left once strings, label matchers `{…}`, range
 * selectors `[…]`, grouping lists `by (…)`, Grafana variables, numbers and function calls are taken out.
 */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\w+/g, ' ')
    // numbers and durations (0.95, 5m, 1h30m), so a unit letter is not read as a name
    .replace(/(?<![A-Za-z0-9_:])\d[\d.]*(?:e[+-]?\d+)?(?:ms|[smhdwy])*/g, ' ')
  const names: string[] = []
  for (const match of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = bare.slice(match.index + match[0].length).trimStart()
    if (after.startsWith('(') || KEYWORDS.has(match[0].toLowerCase())) continue
    names.push(match[0])
  }
  return names
}

/**
 * The sample names a Prometheus scrape of `text` can hold, from its `# TYPE` lines: a histogram
 * `x` gives x_bucket, x_sum and x_count; a summary x, x_sum and x_count; others their own name.
 */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>()
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`)
    else if (type === 'summary') for (const suffix of ['', '_sum', '_count']) names.add(`${name}${suffix}`)
    else names.add(name!)
  }
  return names
}

describe('metricNames', () => {
  it.each([
    ['sum by (route) (rate(mcp_relay_requests_total{job=~"$job", route=~"/tools/.*"}[$__rate_interval]))', ['mcp_relay_requests_total']],
    ['histogram_quantile(0.95, sum by (le, server_id) (rate(x_bucket{a="b{c}"}[5m])))', ['x_bucket']],
    ['sum(increase(a_total[$__range])) / sum(increase(b_total{outcome!="ok"}[$__range]))', ['a_total', 'b_total']],
    ['label_values(mcp_relay_upstream_request_duration_seconds_count{job=~"$job"}, server_id)', ['mcp_relay_upstream_request_duration_seconds_count', 'server_id']],
    ['up == 1 and on (instance) process_start_time_seconds offset 5m', ['up', 'process_start_time_seconds']],
  ])('%s', (expr, names) => {
    expect(metricNames(expr)).toEqual(names)
  })
})

describe('the Grafana dashboard', () => {
  let upstream: McpUpstream
  let relay: RelayProcess
  let exported: Set<string>

  beforeAll(async () => {
    upstream = await startMcpUpstream()
    relay = await startRelayProcess({
      STORE_URL: 'memory://',
      MCP_SERVERS_JSON: JSON.stringify({ servers: [{ server_id: 'open', mcp_url: upstream.url }] }),
    })
    // A few requests, so the labelled series have samples too: tool lists (the first one learns
    // the server is open, then a cache miss and a hit), a call, a refusal.
    for (let i = 0; i < 3; i++) expect((await relay.post('/tools/list-tools', { user_id: 'amy', server_id: 'open' })).status).toBe(200)
    expect((await relay.post('/tools/call-tool', { user_id: 'amy', tool_ref: 'open::echo', input: { text: 'hi' } })).body).toMatchObject({ ok: true })
    expect((await relay.post('/tools/auth-status', { user_id: 'amy' }, { apiKey: 'wrong-key-0123456789abcdef' })).status).toBe(401)
    const scrape = await fetch(`${relay.url}/metrics`, { signal: AbortSignal.timeout(5000) })
    expect(scrape.status).toBe(200)
    const text = await scrape.text()
    expect(text).toMatch(/^mcp_relay_tool_cache_lookups_total\{server_id="open",result="hit"\} 1$/m)
    expect(text).toMatch(/^mcp_relay_upstream_request_duration_seconds_count\{server_id="open",outcome="ok"\} \d+$/m)
    exported = exportedNames(text)
  })

  afterAll(async () => {
    await relay?.stop()
    await upstream?.close()
  })

  it('names in every expression only metrics the live relay exports', () => {
    const exprs = expressions()
    expect(exprs.length).toBeGreaterThan(10)
    const unknown = exprs.flatMap((expr) => metricNames(expr).filter((name) => !exported.has(name) && !isLabelArgument(expr, name)).map((name) => `${name} in ${expr}`))
    expect(unknown).toEqual([])
  })

  it('shows every metric the relay itself defines (not only Node process metrics)', () => {
    const used = new Set(expressions().flatMap(metricNames))
    const relayOwn = [...exported].filter((name) => name.startsWith('mcp_relay_') && !/^mcp_relay_(process|nodejs)_/.test(name))
    const families = new Set(relayOwn.map((name) => name.replace(/_(bucket|sum|count)$/, '')))
    const shown = [...families].filter((family) => [...used].some((name) => name === family || name.startsWith(`${family}_`)))
    expect(shown.sort()).toEqual([...families].sort())
    expect(families.size).toBeGreaterThanOrEqual(7)
  })

  it('queries through a Prometheus datasource variable, never a fixed datasource', () => {
    const variable = dashboard.templating.list.find((entry) => entry.type === 'datasource')
    expect(variable).toMatchObject({ name: 'datasource', query: 'prometheus' })
    for (const panel of queryPanels) {
      expect(panel.datasource?.uid, panel.title).toBe('${datasource}')
      for (const target of panel.targets ?? []) expect(target.datasource?.uid ?? '${datasource}', panel.title).toBe('${datasource}')
    }
    for (const entry of dashboard.templating.list.filter((item) => item.type === 'query')) expect(entry.datasource?.uid).toBe('${datasource}')
  })

  it('has a uid, a title and panels with unique ids', () => {
    expect(dashboard).toMatchObject({ uid: 'mcp-auth-relay', title: 'MCP Auth Relay' })
    const ids = allPanels(dashboard.panels).map((panel) => panel.id)
    expect(new Set(ids).size).toBe(ids.length)
  })
})

/** label_values(metric, label): the second argument is a label name, not a metric. */
function isLabelArgument(expr: string, name: string): boolean {
  return new RegExp(`^label_values\\(.*,\\s*${name}\\s*\\)$`).test(expr)
}
