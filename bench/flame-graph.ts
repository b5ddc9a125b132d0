// A flame graph (SVG) of a V8 .cpuprofile, as docs/benchmarks.md shows the relay's warm call-tool:
//
//   BENCH_RELAY_NODE_OPTIONS='--cpu-prof --cpu-prof-dir=/tmp/prof' BENCH_RUNS=A BENCH_REQUESTS=6000 npm run bench
//   node --experimental-strip-types bench/flame-graph.ts /tmp/prof/CPU*.cpuprofile docs/x.svg \
//     --title 'call-tool, before' --per-call-us 610 --from 0.5
//
// The stacks of the samples are folded (root at the bottom, callers below callees, width =
// share of CPU time); garbage-collection samples are kept as their own tower, idle ones left out,
// so the picture adds up to the process's CPU time. `--from 0.5` keeps the second half of the profile only:
// the warm run, past start-up and warm-up. `--per-call-us` (the bench's CPU µs per request for
// the run) labels each frame with its µs per call.
import { readFileSync, writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}
interface Frame {
  name: string
  group: string
  self: number
  total: number
  children: Map<string, Frame>
}

const COLOURS: Record<string, string> = {
  root: '#bbbbbb', relay: '#e8743b', sdk: '#5b8ff9', pino: '#b37feb', fastify: '#61ddaa', zod: '#f6bd16',
  library: '#9dc3e6', node: '#c9c9a3', gc: '#ff6b6b', idle: '#eeeeee', native: '#d9a679',
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { title: { type: 'string', default: 'CPU profile' }, 'per-call-us': { type: 'string' }, from: { type: 'string', default: '0' } },
})
const [input, output] = positionals
if (!input || !output) throw new Error('usage: flame-graph.ts PROFILE.cpuprofile OUT.svg [--title T] [--per-call-us N] [--from 0..1]')
const profile = JSON.parse(readFileSync(input, 'utf8')) as Profile
const perCallUs = values['per-call-us'] === undefined ? undefined : Number(values['per-call-us'])
const root = fold(profile, Number(values.from))
writeFileSync(output, render(root, values.title, perCallUs))
console.log(`${output}: ${(root.total / 1000).toFixed(0)} ms of samples`)

/** Sums the time of each sample (from `from` × the profile's length on) into a tree of stacks. */
function fold(profile: Profile, from: number): Frame {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const root: Frame = { name: 'all', group: 'root', self: 0, total: 0, children: new Map() }
  const startAt = profile.startTime + from * (profile.endTime - profile.startTime)
  let time = profile.startTime
  const stacks = new Map<number, ProfileNode[]>()
  // The process waiting for work is not part of a call's cost.
  const idle = new Set(profile.nodes.filter((node) => node.callFrame.functionName === '(idle)').map((node) => node.id))
  for (let i = 0; i < profile.samples.length; i++) {
    time += profile.timeDeltas[i] ?? 0
    const delta = profile.timeDeltas[i + 1] ?? 0 // a sample's weight: the time until the next one
    const id = profile.samples[i]!
    if (time < startAt || delta <= 0 || idle.has(id)) continue
    let stack = stacks.get(id)
    if (!stack) {
      stack = []
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) stack.unshift(byId.get(at)!)
      stack.shift() // V8's "(root)"
      stacks.set(id, stack)
    }
    let frame = root
    root.total += delta
    for (const node of stack) {
      const name = frameName(node)
      let next = frame.children.get(name)
      if (!next) {
        next = { name, group: groupOf(node.callFrame.url, node.callFrame.functionName), self: 0, total: 0, children: new Map() }
        frame.children.set(name, next)
      }
      next.total += delta
      frame = next
    }
    frame.self += delta
  }
  return root
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame
  if (!url) return functionName || '(anonymous)'
  const file = url.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, '').replace(/.*\/(src|test|bench)\//, '$1/')
  return `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}`
}

/** Who owns a frame: the relay's code, the MCP SDK, pino, Fastify, zod, Node, V8. */
function groupOf(url: string, functionName: string): string {
  if (url.includes('/src/')) return 'relay'
  if (url.includes('@modelcontextprotocol')) return 'sdk'
  if (url.includes('/pino') || url.includes('@pinojs') || url.includes('sonic-boom')) return 'pino'
  if (url.includes('/fastify') || url.includes('@fastify') || url.includes('find-my-way') || url.includes('avvio')) return 'fastify'
  if (url.includes('/zod/')) return 'zod'
  if (url.includes('node_modules')) return 'library'
  if (url.startsWith('node:')) return 'node'
  if (functionName === '(garbage collector)') return 'gc'
  if (functionName === '(idle)' || functionName === '(program)') return 'idle'
  return 'native'
}


function render(root: Frame, title: string, perCallUs: number | undefined): string {
  const width = 1600
  const rowHeight = 17
  const busy = root.total
  const rows: string[] = []
  let depth = 0
  const place = (frame: Frame, x: number, level: number) => {
    const w = (frame.total / root.total) * width
    if (w < 0.5) return
    depth = Math.max(depth, level)
    const share = frame.total / busy
    const label = perCallUs === undefined ? `${(share * 100).toFixed(1)}%` : `${(share * perCallUs).toFixed(1)} µs`
    const text = `${frame.name} (${label})`
    rows.push(
      `<g><title>${escape(text)}</title><rect x="${x.toFixed(1)}" y="LEVEL${level}" width="${Math.max(w - 0.4, 0.3).toFixed(1)}" height="${rowHeight - 1}" fill="${COLOURS[frame.group]}"/>` +
        (w > 40 ? `<text x="${(x + 3).toFixed(1)}" y="TEXT${level}">${escape(fit(text, w))}</text>` : '') +
        '</g>',
    )
    let childX = x
    for (const child of [...frame.children.values()].sort((a, b) => b.total - a.total)) {
      place(child, childX, level + 1)
      childX += (child.total / root.total) * width
    }
  }
  place(root, 0, 0)
  const top = 60
  const height = top + (depth + 1) * rowHeight + 40
  // Flame graph: the root at the bottom.
  const y = (level: number) => height - 40 - (level + 1) * rowHeight
  const body = rows.join('\n').replace(/LEVEL(\d+)/g, (_, level: string) => String(y(Number(level)))).replace(/TEXT(\d+)/g, (_, level: string) => String(y(Number(level)) + 12))
  const legend = Object.entries(COLOURS)
    .filter(([group]) => group !== 'root')
    .map(([group, colour], i) => `<rect x="${10 + i * 110}" y="${height - 25}" width="12" height="12" fill="${colour}"/><text x="${26 + i * 110}" y="${height - 15}">${group}</text>`)
    .join('')
  const subtitle = perCallUs === undefined ? 'width: share of the CPU time sampled' : `width: share of the CPU time sampled; labels: µs of CPU per call, from the bench's ${perCallUs} µs a call`
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="11">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="22" font-size="16">${escape(title)}</text>
<text x="10" y="42">${escape(subtitle)}</text>
${body}
${legend}
</svg>
`
}

/** As much of `text` as fits in `width` pixels of 11 px monospace. */
function fit(text: string, width: number): string {
  const chars = Math.floor((width - 6) / 6.6)
  return text.length <= chars ? text : `${text.slice(0, Math.max(chars - 1, 0))}…`
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}
