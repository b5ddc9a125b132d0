// The JSON shape counter that bounds what an upstream makes the relay parse (src/mcp/json-shape.ts):
// its counts against JSON.parse's own reading, strings and escapes, event streams split anywhere,
// and the GET stream of a session cut at a deep or crowded event (the hostile battery covers the
// rest through the relay's routes).
import { describe, expect, it } from 'vitest'
import { EventStreamShape, feedShape, JsonShape } from '../../src/mcp/json-shape.ts'
import { createUpstreamFetch, UpstreamTooLargeError } from '../../src/mcp/upstream-fetch.ts'

const bytes = (text: string) => new TextEncoder().encode(text)

describe('JsonShape', () => {
  it('counts objects, arrays, strings and separators, never what is inside a string', () => {
    const cases: Array<[string, number]> = [
      ['1', 0],
      ['[]', 1],
      ['[1,2,3]', 3],
      ['{"a":1}', 2],
      ['{"a":[1,{"b":"c"}]}', 7],
      ['"{[,\\"]}"', 1],
      ['"\\\\"', 1],
      ['["\\\\\\"",","]', 4],
      ['"ü€😀,"', 1],
    ]
    for (const [text, items] of cases) {
      JSON.parse(text) // each case is JSON
      const shape = new JsonShape({ maxDepth: 10, maxItems: 100 })
      expect(feedShape(shape, bytes(text)), text).toBeUndefined()
      expect(shape.itemCount, text).toBe(items)
      const sameOnText = new JsonShape({ maxDepth: 10, maxItems: 100 })
      expect(sameOnText.stepText(text)).toBe(true)
      expect(sameOnText.itemCount, text).toBe(items)
    }
  })

  it('fails past the depth or the items, naming which, and stays failed', () => {
    const deep = new JsonShape({ maxDepth: 3, maxItems: 100 })
    expect(feedShape(deep, bytes('[[['))).toBeUndefined()
    expect(feedShape(deep, bytes('['))).toBe('nests objects or arrays more than 3 levels deep')
    expect(deep.failure).toBe('nests objects or arrays more than 3 levels deep')
    // Depth counts what is open now, not how many were ever opened.
    const wide = new JsonShape({ maxDepth: 2, maxItems: 1000 })
    expect(feedShape(wide, bytes('[[],[],[],[],[]]'))).toBeUndefined()
    const crowded = new JsonShape({ maxDepth: 10, maxItems: 5 })
    expect(feedShape(crowded, bytes('[1,2,3,4,'))).toBeUndefined()
    expect(feedShape(crowded, bytes('5'))).toBeUndefined()
    expect(feedShape(crowded, bytes(',6'))).toBe('holds more than 5 JSON items')
  })

  it('counts the same however the bytes are split, an escape at a chunk edge included', () => {
    const text = '{"a":"x\\"y,[","b":[1,2,{"c":"\\\\"}]}'
    const whole = new JsonShape({ maxDepth: 10, maxItems: 100 })
    feedShape(whole, bytes(text))
    for (let cut = 1; cut < text.length; cut++) {
      const split = new JsonShape({ maxDepth: 10, maxItems: 100 })
      feedShape(split, bytes(text.slice(0, cut)))
      feedShape(split, bytes(text.slice(cut)))
      expect(split.itemCount, `cut at ${cut}`).toBe(whole.itemCount)
    }
  })
})

describe('EventStreamShape', () => {
  it('reads only data lines, each event a JSON text of its own, with any line ending', () => {
    const stream = [
      ': a comment with [[[[ and "',
      'event: message',
      'id: [[[[',
      'data: {"jsonrpc":"2.0",',
      'data:"id":1,"result":{"a":[1,2]}}',
      '',
      'data: [[[',
      '',
    ]
    for (const newline of ['\n', '\r\n', '\r']) {
      const shape = new EventStreamShape({ maxDepth: 3, maxItems: 100 }, { perEvent: false })
      expect(feedShape(shape, bytes(stream.join(newline))), JSON.stringify(newline)).toBeUndefined()
      // {"jsonrpc":"2.0","id":1,"result":{"a":[1,2]}} is 11, [[[ is 3; the comment and the id are not JSON.
      expect(shape.itemCount).toBe(14)
    }
  })

  it('starts each event afresh, its items too when per event', () => {
    const event = 'data: [[["' + ',' + '"]]]\n\n'
    const perEvent = new EventStreamShape({ maxDepth: 3, maxItems: 5 }, { perEvent: true })
    expect(feedShape(perEvent, bytes(event.repeat(10)))).toBeUndefined()
    const perStream = new EventStreamShape({ maxDepth: 3, maxItems: 5 }, { perEvent: false })
    expect(feedShape(perStream, bytes(event.repeat(10)))).toBe('holds more than 5 JSON items')
    // An unclosed string or array in one event does not carry into the next.
    const broken = new EventStreamShape({ maxDepth: 2, maxItems: 100 }, { perEvent: true })
    expect(feedShape(broken, bytes('data: [["\n\ndata: [[\n\n'))).toBeUndefined()
  })
})

describe("a session's event stream (GET)", () => {
  it.each([
    ['deep', `data: ${'['.repeat(200)}${']'.repeat(200)}\n\n`, /nests objects or arrays more than 128 levels deep/],
    ['crowded', `data: [${'1,'.repeat(60_000)}1]\n\n`, /holds more than 50,000 JSON items/],
  ])('is cut at an event too %s to parse', async (_name, event, problem) => {
    const stream = createUpstreamFetch({
      accessToken: () => undefined,
      maxResponseBytes: 2 * 1024 * 1024,
      fetch: async () => new Response(`data: {"jsonrpc":"2.0","method":"notifications/message"}\n\n${event}`, { headers: { 'content-type': 'text/event-stream' } }),
    })
    const response = await stream('http://mcp.example/mcp', { method: 'GET' })
    const read = await response.text().catch((error: unknown) => error)
    expect(read).toBeInstanceOf(UpstreamTooLargeError)
    expect((read as Error).message).toMatch(problem)
  })
})
