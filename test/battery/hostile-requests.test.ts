// Hostile requests against the real relay (real authorization server, real MCP upstreams, two
// users really signed in): every route, every field with every wrong type, broken bodies and
// headers, then a property-based fuzz of the three tool routes. Every answer is a 4xx with a JSON
// error (an HTML page on the browser routes) or a 200; never a 5xx; the users still work after.
import fc from 'fast-check'
import { signUserId } from '../../src/http/identity.ts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { OTHER_TENANT_KEY, startRelay, TEST_API_KEY, type TestRelay } from '../support/relay.ts'
import { answeredByStatus, createTally, send, sendChecked, signIn, whoami, type RawRequest } from './harness.ts'

let as: AuthorizationServer
let docs: McpUpstream
let open: McpUpstream
let relay: TestRelay
const tally = createTally('hostile-requests')
const auth = { authorization: `Bearer ${TEST_API_KEY}` }
const json = { ...auth, 'content-type': 'application/json' }

beforeAll(async () => {
  as = await startAuthorizationServer()
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  open = await startMcpUpstream()
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Internal docs', mcp_url: docs.url },
      { server_id: 'open', description: 'Open server', mcp_url: open.url },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, UPSTREAM_TIMEOUT_SECONDS: '5' },
  })
  // The two users who must still work after everything below.
  await signIn(relay, 'alice', 'alice')
  await signIn(relay, 'bob', 'bob', { apiKey: OTHER_TENANT_KEY })
})

afterAll(async () => {
  tally.print({ serverErrors: tally.serverErrors(), relayAnswers: await answeredByStatus([relay]) })
  await relay?.close()
  await Promise.all([docs?.close(), open?.close(), as?.close()])
})

const ROUTES = {
  '/tools/auth-status': { base: { user_id: 'hostile-user' }, fields: ['user_id', 'server_id', 'server_ids', 'force_reauth'] },
  '/tools/list-tools': { base: { user_id: 'hostile-user' }, fields: ['user_id', 'server_id', 'server_ids'] },
  '/tools/call-tool': {
    base: { user_id: 'hostile-user', tool_ref: 'open::echo', input: { text: 'hi' } },
    fields: ['user_id', 'tool_ref', 'input', 'arguments'],
  },
  '/oauth/reset': { base: { user_id: 'hostile-user' }, fields: ['user_id', 'server_id'] },
} as const
type Route = keyof typeof ROUTES
const ROUTE_PATHS = Object.keys(ROUTES) as Route[]

const deep = (levels: number, open: string, close: string, inner = '1') => open.repeat(levels) + inner + close.repeat(levels)

/** Values of every JSON type and then some, for every field. */
const WRONG_VALUES: Record<string, unknown> = {
  null: null,
  true: true,
  false: false,
  zero: 0,
  negative: -1,
  fraction: 0.5,
  'huge number': 1e308,
  'empty string': '',
  blank: ' \t ',
  'empty array': [],
  'array of strings': ['docs', 'open'],
  'array of numbers': [1, 2],
  'nested array': [[['docs']]],
  'empty object': {},
  object: { a: 1 },
  'object with user_id': { user_id: 'alice' },
  '10k string': 'x'.repeat(10_000),
  unicode: 'ユーザー🙂\u202eevil\u200d',
  'NUL inside': 'a\u0000b',
  newline: 'a\nb',
  'C1 control': 'a\u0085b',
  'lone surrogate': 'a\ud800b',
  'JSON text': '{"a":1}',
  'JSON array text': '["docs"]',
  'null text': 'null',
  __proto__: '__proto__',
  'path traversal': '../../etc/passwd',
  'HTML': '<script>alert(1)</script>',
}

function post(path: string, body: unknown, headers: Record<string, string> = json): RawRequest {
  return { path, headers, body: typeof body === 'string' ? body : JSON.stringify(body) }
}

describe('every field of every route with every wrong type', () => {
  for (const path of ROUTE_PATHS) {
    const route = ROUTES[path]
    for (const field of route.fields) {
      it(`${path} ${field}`, async () => {
        for (const [name, value] of Object.entries(WRONG_VALUES)) {
          const body = { ...route.base, [field]: value }
          const answer = await sendChecked(relay, tally, post(path, body), `${field}=${name}`)
          // A user_id that is not a non-empty string of at most 256 characters without control
          // characters is refused and named.
          if (field === 'user_id' && (typeof value !== 'string' || value.trim() === '' || /\p{Cc}/u.test(value) || value.length > 256)) {
            expect(answer.status, `${field}=${name}`).toBe(400)
            expect(answer.json.error.message, name).toMatch(/^user_id: /)
          }
        }
      })
    }
  }
})

describe('user_id', () => {
  const cases: Record<string, string> = {
    '257 characters': 'u'.repeat(257),
    '300k characters': 'u'.repeat(300_000),
    'emoji and RTL': '👩‍💻\u202eغبي',
    'combining marks': 'e\u0301\u0301\u0301\u0301',
    'zero-width only': '\u200b\u200c\u200d',
    'all control': '\u0000\u0001\u001f\u007f',
    'private use': '\ue000\uf8ff',
    'lone low surrogate': '\udc00',
    'looks like a store key': 'default:alice:docs',
    'percent-encoded alice': 'alice%00',
    // Trimmed to carol, who is nobody here (alice would be reset by the reset route).
    'carol with spaces': '  carol  ',
  }
  for (const path of ROUTE_PATHS) {
    it(`on ${path}`, async () => {
      for (const [name, userId] of Object.entries(cases)) {
        await sendChecked(relay, tally, post(path, { ...ROUTES[path].base, user_id: userId }), name)
      }
    })
  }
})

describe('tool_ref and input', () => {
  it('refuses malformed tool_refs, and splits at the first ::', async () => {
    const refs: Record<string, number> = {
      '::': 400,
      'a::': 400,
      '::b': 400,
      'docs::': 400,
      'docs:whoami': 400,
      'a::b::c': 400, // no server named a
      'DOCS::whoami': 400,
      'docs\u0000::whoami': 400,
    }
    for (const [ref, status] of Object.entries(refs)) {
      const answer = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: ref, input: {} }), ref)
      expect(answer.status, ref).toBe(status)
      expect(answer.json.error.code, ref).toMatch(/INVALID_INPUT|UNKNOWN_SERVER/)
    }
    // DESIGN.md §4: a::b::c is tool b::c on server a; docs has none.
    const nested = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: 'docs::who::ami', input: {} }))
    expect(nested.json).toMatchObject({ ok: false, error_code: 'UNKNOWN_TOOL', tool_ref: 'docs::who::ami' })
    const long = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: `docs::${'t'.repeat(100_000)}`, input: {} }))
    expect(long.status).toBe(200)
    expect(long.json.ok).toBe(false)
    const spaced = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: '  docs::whoami  ', input: {} }))
    expect(spaced.json.result.structuredContent.sub).toBe('alice')
  })

  it('refuses inputs that are not objects, and survives huge and deep ones', async () => {
    const refused: Record<string, unknown> = {
      array: [1, 2],
      number: 42,
      null: null,
      true: true,
      'array text': '[1]',
      'number text': '1',
      'null text': 'null',
      'broken JSON text': '{"text":',
      '1 MB non-JSON string': 'x'.repeat(1_000_000),
    }
    for (const [name, input] of Object.entries(refused)) {
      const answer = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: 'docs::echo', input }), name)
      expect(answer.status, name).toBe(name.startsWith('1 MB') ? 400 : 400)
      expect(answer.json.error.message, name).toMatch(/^input: /)
    }
    // A 1 MB JSON-object string is a valid input: the tool gets it.
    const bigText = 'y'.repeat(900_000)
    const big = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: 'docs::echo', input: JSON.stringify({ text: bigText }) }))
    expect(big.json.ok, JSON.stringify(big.json).slice(0, 300)).toBe(true)
    expect(big.json.result.content[0].text.length).toBe(bigText.length)
    // A fenced JSON string, as LLMs write it.
    const fenced = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: 'docs::echo', input: '```json\n{"text":"fenced"}\n```' }))
    expect(fenced.json.result.content[0].text).toBe('fenced')
    // Deeply nested input objects, as a value and as a string: an answer, not a crash.
    // Deeper than any tool's arguments: refused as the caller's mistake, not passed on to
    // overflow a serializer and read as the server's failure. (Built as text: JSON.stringify
    // itself overflows the stack on 50k levels.)
    for (const levels of [101, 1_000, 50_000]) {
      const nested = deep(levels - 1, '{"a":', '}', '{}')
      for (const input of [nested, JSON.stringify(nested)]) {
        const answer = await sendChecked(relay, tally, post('/tools/call-tool', `{"user_id":"alice","tool_ref":"docs::echo","input":${input}}`), `deep ${levels}`)
        expect(answer.status, `deep ${levels}`).toBe(400)
        expect(answer.json.error.message).toBe('input: must not nest objects or arrays more than 100 levels deep')
      }
    }
    const hundred = await sendChecked(relay, tally, post('/tools/call-tool', `{"user_id":"alice","tool_ref":"docs::echo","input":{"text":"deep","x":${deep(98, '[', ']')}}}`))
    expect(hundred.json.ok).toBe(true)
  })
})

describe('answers stay small whatever the request repeats', () => {
  it('names at most a few unknown servers, each cut short', async () => {
    const cases: Array<[string, object]> = [
      ['/tools/auth-status', { user_id: 'a', server_ids: Array.from({ length: 30_000 }, (_, i) => `unknown-${i}`).join(',') }],
      ['/tools/list-tools', { user_id: 'a', server_id: 'z'.repeat(500_000) }],
      ['/tools/call-tool', { user_id: 'a', tool_ref: `${'x'.repeat(500_000)}::y`, input: {} }],
      ['/oauth/reset', { user_id: 'a', server_id: 'r'.repeat(500_000) }],
    ]
    for (const [path, body] of cases) {
      const answer = await sendChecked(relay, tally, post(path, body))
      expect(answer.status, path).toBe(400)
      expect(answer.json.error.code).toBe('UNKNOWN_SERVER')
      expect(answer.json.error.message.length, path).toBeLessThan(600)
    }
    const unknownTool = await sendChecked(relay, tally, post('/tools/call-tool', { user_id: 'alice', tool_ref: `docs::${'t'.repeat(500_000)}`, input: {} }))
    expect(unknownTool.json.error_code).toBe('UNKNOWN_TOOL')
    expect(unknownTool.json.message.length).toBeLessThan(600)
  })
})

describe('bodies that are not what the route takes', () => {
  const bodies: Array<{ name: string; request: (path: string) => RawRequest; status: number | 'any' }> = [
    { name: 'no content type', request: (path) => ({ path, headers: auth, body: new TextEncoder().encode('{"user_id":"a"}') }), status: 400 },
    { name: 'text/plain', request: (path) => ({ path, headers: { ...auth, 'content-type': 'text/plain' }, body: '{"user_id":"a"}' }), status: 400 },
    { name: 'form', request: (path) => ({ path, headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'user_id=a' }), status: 400 },
    { name: 'multipart', request: (path) => ({ path, headers: { ...auth, 'content-type': 'multipart/form-data; boundary=x' }, body: '--x\r\nContent-Disposition: form-data; name="user_id"\r\n\r\na\r\n--x--' }), status: 400 },
    { name: 'xml', request: (path) => ({ path, headers: { ...auth, 'content-type': 'application/xml' }, body: '<user_id>a</user_id>' }), status: 400 },
    { name: 'json utf-16 charset', request: (path) => ({ path, headers: { ...auth, 'content-type': 'application/json; charset=utf-16' }, body: '{"user_id":"a"}' }), status: 'any' },
    { name: 'json-like type', request: (path) => ({ path, headers: { ...auth, 'content-type': 'application/jsonx' }, body: '{"user_id":"a"}' }), status: 400 },
    { name: 'vendor +json', request: (path) => ({ path, headers: { ...auth, 'content-type': 'application/vnd.api+json' }, body: '{"user_id":"a"}' }), status: 400 },
    { name: 'upper-case type', request: (path) => ({ path, headers: { ...auth, 'content-type': 'APPLICATION/JSON' }, body: '{"user_id":"a"}' }), status: 'any' },
    { name: 'garbage type', request: (path) => ({ path, headers: { ...auth, 'content-type': ';;;/=' }, body: '{"user_id":"a"}' }), status: 400 },
    { name: 'empty body', request: (path) => ({ path, headers: json, body: '' }), status: 400 },
    { name: 'no body', request: (path) => ({ path, headers: json }), status: 400 },
    { name: 'not JSON', request: (path) => post(path, '{user_id: a}'), status: 400 },
    { name: 'single quotes', request: (path) => post(path, "{'user_id':'a'}"), status: 400 },
    { name: 'truncated JSON', request: (path) => post(path, '{"user_id":"a"'), status: 400 },
    { name: 'trailing garbage', request: (path) => post(path, '{"user_id":"a"} x'), status: 400 },
    { name: 'NaN', request: (path) => post(path, 'NaN'), status: 400 },
    { name: 'JSON null', request: (path) => post(path, 'null'), status: 400 },
    { name: 'JSON array', request: (path) => post(path, '[{"user_id":"a"}]'), status: 400 },
    { name: 'JSON string', request: (path) => post(path, '"user_id"'), status: 400 },
    { name: 'JSON number', request: (path) => post(path, '1'), status: 400 },
    { name: 'JSON true', request: (path) => post(path, 'true'), status: 400 },
    { name: 'BOM first', request: (path) => post(path, '\ufeff{"user_id":"a"}'), status: 'any' },
    { name: 'invalid UTF-8', request: (path) => ({ path, headers: json, body: new Uint8Array([0x7b, 0x22, 0x75, 0x73, 0x65, 0x72, 0x5f, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }), status: 'any' },
    { name: 'NUL bytes', request: (path) => ({ path, headers: json, body: new Uint8Array([0x7b, 0x00, 0x7d]) }), status: 400 },
    { name: '__proto__ key', request: (path) => post(path, '{"user_id":"a","__proto__":{"polluted":true}}'), status: 400 },
    { name: 'constructor.prototype key', request: (path) => post(path, '{"user_id":"a","constructor":{"prototype":{"polluted":true}}}'), status: 400 },
    { name: 'duplicate keys', request: (path) => post(path, '{"user_id":"alice","user_id":"dup-user"}'), status: 'any' },
    { name: '2 MB body', request: (path) => post(path, JSON.stringify({ user_id: 'a', pad: 'p'.repeat(2 * 1024 * 1024) })), status: 413 },
    { name: '1 MiB + 1 byte', request: (path) => post(path, `{"user_id":"a","pad":"${'p'.repeat(1024 * 1024 - 23)}"}`), status: 413 },
    { name: '2 MB chunked', request: (path) => ({ path, headers: json, body: chunkedBody(2 * 1024 * 1024) }), status: 413 },
    { name: '100k levels of arrays', request: (path) => post(path, deep(100_000, '[', ']')), status: 400 },
    { name: '100k levels of objects', request: (path) => post(path, deep(100_000, '{"a":', '}')), status: 400 },
    { name: '100k levels in user_id', request: (path) => post(path, `{"user_id":${deep(100_000, '[', ']')}}`), status: 400 },
    // (reset takes no server_ids: it ignores the field)
    { name: '100k levels in server_ids', request: (path) => post(path, `{"user_id":"a","server_ids":${deep(100_000, '[', ']')}}`), status: 'any' },
    { name: '100k levels in input', request: (path) => post(path, `{"user_id":"a","tool_ref":"open::echo","input":${deep(100_000, '{"a":', '}')}}`), status: 'any' },
    { name: '500k unclosed brackets', request: (path) => post(path, '['.repeat(500_000)), status: 400 },
    { name: '100k keys', request: (path) => post(path, `{"user_id":"a",${Array.from({ length: 100_000 }, (_, i) => `"k${i}":0`).join(',')}}`), status: 'any' },
  ]
  for (const path of ROUTE_PATHS) {
    it(`on ${path}`, async () => {
      for (const body of bodies) {
        const answer = await sendChecked(relay, tally, body.request(path), body.name)
        if (body.status !== 'any') expect(answer.status, `${path} ${body.name}: ${answer.text.slice(0, 200)}`).toBe(body.status)
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    })
  }
})

function chunkedBody(bytes: number): ReadableStream<Uint8Array> {
  let sent = 0
  const chunk = new TextEncoder().encode('p'.repeat(64 * 1024))
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"user_id":"a","pad":"'))
    },
    pull(controller) {
      if (sent >= bytes) {
        controller.enqueue(new TextEncoder().encode('"}'))
        controller.close()
        return
      }
      sent += chunk.byteLength
      controller.enqueue(chunk)
    },
  })
}

describe('API keys and headers', () => {
  const headerCases: Array<{ name: string; headers: Record<string, string>; status: number }> = [
    { name: 'no Authorization', headers: { 'content-type': 'application/json' }, status: 401 },
    { name: 'Bearer alone', headers: { 'content-type': 'application/json', authorization: 'Bearer' }, status: 401 },
    { name: 'Bearer and spaces', headers: { 'content-type': 'application/json', authorization: 'Bearer    ' }, status: 401 },
    { name: 'Basic', headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`x:${TEST_API_KEY}`).toString('base64')}` }, status: 401 },
    { name: 'wrong key', headers: { 'content-type': 'application/json', authorization: 'Bearer wrong-key-0123456789abcdef' }, status: 401 },
    { name: 'key prefix', headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY.slice(0, -1)}` }, status: 401 },
    { name: 'key and more', headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY} ${OTHER_TENANT_KEY}` }, status: 401 },
    { name: 'two keys by comma', headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_API_KEY},${OTHER_TENANT_KEY}` }, status: 401 },
    { name: '8 KB key', headers: { 'content-type': 'application/json', authorization: `Bearer ${'k'.repeat(8000)}` }, status: 401 },
    { name: 'lower-case scheme', headers: { 'content-type': 'application/json', authorization: `bearer ${TEST_API_KEY}` }, status: 200 },
    { name: '12 KB cookie', headers: { ...json, cookie: `c=${'c'.repeat(12_000)}` }, status: 200 },
    { name: 'hostile X-Request-Id', headers: { ...json, 'x-request-id': '<script>\u00ff' }, status: 200 },
  ]
  for (const path of ROUTE_PATHS) {
    it(`on ${path}`, async () => {
      for (const { name, headers, status } of headerCases) {
        const answer = await sendChecked(relay, tally, { path, headers, body: JSON.stringify(ROUTES[path].base) }, name)
        expect(answer.status, name).toBe(status)
      }
    })
  }

  it('answers headers larger than the limit with a 431, before any route runs', async () => {
    const answer = await send(relay, { path: '/tools/auth-status', headers: { ...json, 'x-pad': 'p'.repeat(20_000) }, body: '{"user_id":"a"}' })
    tally.add(answer.status)
    expect(answer.status).toBe(431)
    expect(answer.json).toEqual({ error: { code: 'INVALID_INPUT', message: expect.any(String) } })
  })
})

describe('other routes, methods and URLs', () => {
  const requests: Array<{ request: RawRequest; status: number | 'any' }> = [
    ...['PUT', 'DELETE', 'PATCH', 'OPTIONS'].map((method) => ({ request: { method, path: '/tools/call-tool', headers: json, body: '{}' }, status: 404 })),
    { request: { method: 'GET', path: '/tools/call-tool', headers: auth }, status: 404 },
    { request: { method: 'GET', path: '/tools/unknown' }, status: 404 },
    { request: { method: 'GET', path: '/%' }, status: 400 },
    { request: { method: 'GET', path: '/%c0%ae%c0%ae/etc/passwd' }, status: 'any' },
    { request: { method: 'GET', path: '//tools//auth-status' }, status: 404 },
    { request: { method: 'POST', path: '/tools/auth-status/', headers: json, body: '{"user_id":"a"}' }, status: 'any' },
    { request: { method: 'POST', path: '/tools/auth-status?user_id=alice', headers: json, body: '{"user_id":"query-user"}' }, status: 200 },
    { request: { method: 'GET', path: '/healthz?x=<script>' }, status: 200 },
    { request: { method: 'HEAD', path: '/healthz' }, status: 200 },
    { request: { method: 'GET', path: '/readyz' }, status: 200 },
    { request: { method: 'GET', path: '/openapi.json?%00' }, status: 200 },
    { request: { method: 'GET', path: '/oauth/client-metadata.json' }, status: 200 },
    { request: { method: 'GET', path: '/metrics' }, status: 200 },
    { request: { method: 'POST', path: '/oauth/callback', headers: json, body: '{}' }, status: 404 },
    // The browser routes: HTML pages, never a 5xx, never a redirect except a live ticket's.
    ...[
      '/oauth/start/',
      '/oauth/start/x',
      `/oauth/start/${'a'.repeat(43)}`,
      `/oauth/start/${'a'.repeat(300)}`,
      '/oauth/start/%00',
      '/oauth/start/%ff%fe',
      '/oauth/start/%3Cscript%3Ealert(1)%3C%2Fscript%3E',
      '/oauth/start/..%2F..%2Fmetrics',
      '/oauth/start/%F0%9F%99%82',
      '/oauth/callback',
      '/oauth/callback?',
      '/oauth/callback?state=',
      '/oauth/callback?code=abc',
      '/oauth/callback?state=forged&code=abc',
      '/oauth/callback?state=a&state=b&code=c&code=d',
      '/oauth/callback?error=access_denied',
      '/oauth/callback?state=%00%ff&error=%3Cscript%3E',
      `/oauth/callback?state=${'s'.repeat(12_000)}`,
      '/oauth/callback?__proto__[polluted]=1&state=x',
    ].map((path) => ({ request: { method: 'GET', path }, status: 'any' as const })),
  ]
  it('answers each with a well-formed 2xx or 4xx', async () => {
    for (const { request, status } of requests) {
      const answer = await sendChecked(relay, tally, request, `${request.method} ${request.path.slice(0, 80)}`)
      if (status !== 'any') expect(answer.status, `${request.method} ${request.path}`).toBe(status)
      if (request.path.startsWith('/oauth/start/') || request.path.startsWith('/oauth/callback')) {
        expect(answer.status, request.path).toBeGreaterThanOrEqual(400)
        expect(answer.headers.get('location'), request.path).toBeNull()
      }
    }
  })
})

describe('property-based fuzz of the three tool routes (fast-check, fixed seed)', () => {
  const RUNS = 300
  const anyString = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.constantFrom('alice', 'bob', 'docs', 'open', '', ' ', '::', 'docs::whoami', 'open::echo', 'null', '{}', '[]', 'true', '1'),
  )
  const anyValue = fc.oneof({ weight: 3, arbitrary: anyString }, { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }) }, { weight: 1, arbitrary: fc.anything({ maxDepth: 2 }).map((value) => JSON.parse(JSON.stringify(value ?? null) ?? 'null')) })
  const toolRef = fc.oneof(
    anyValue,
    fc.tuple(fc.constantFrom('docs', 'open', 'none', '', 'DOCS'), fc.constantFrom('whoami', 'echo', 'fail', '', '::', 'x'), anyString).map(([server, tool, tail]) => `${server}::${tool}${tail}`),
  )
  const input = fc.oneof(anyValue, fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 3 })), fc.record({ text: anyValue }).map((value) => JSON.stringify(value)))
  const plausibleUser = fc.oneof(fc.constantFrom('alice', 'bob', 'fuzz-user'), fc.string({ minLength: 1, maxLength: 30 }), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 10 }))
  const fields = {
    user_id: fc.oneof({ weight: 3, arbitrary: plausibleUser }, { weight: 1, arbitrary: anyValue }),
    server_id: anyValue,
    server_ids: fc.oneof(anyValue, fc.array(anyString, { maxLength: 4 }), fc.array(fc.constantFrom('docs', 'open'), { maxLength: 3 }).map((ids) => ids.join(','))),
    force_reauth: fc.oneof(anyValue, fc.constantFrom('true', 'false', '1', '0', 'TRUE', 'yes')),
    tool_ref: toolRef,
    input,
    arguments: input,
  }
  // Whole bodies: any JSON value, an object with any subset of the fields (plus strangers), or
  // one with user_id and tool_ref present, so that many reach the relay's operations.
  const body = fc.oneof(
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    { weight: 3, arbitrary: fc.record({ ...fields, stranger: anyValue }, { requiredKeys: [] }) },
    { weight: 2, arbitrary: fc.record({ ...fields, user_id: plausibleUser }, { requiredKeys: ['user_id', 'tool_ref'] }) },
    {
      weight: 4,
      arbitrary: fc.record(
        {
          user_id: plausibleUser,
          tool_ref: fc.constantFrom('docs::whoami', 'docs::echo', 'docs::fail', 'open::echo', 'open::whoami', 'docs::nope', 'open::a::b'),
          input: fc.oneof(fc.constant({}), fc.record({ text: anyString }), fc.record({ text: anyString }).map((value) => JSON.stringify(value)), fc.dictionary(anyString, fc.jsonValue({ maxDepth: 2 }))),
          server_ids: fc.constantFrom('docs', 'open', 'docs,open', '["open"]', '', ' docs , "open" '),
          force_reauth: fc.constantFrom(false, 'false', '0', ''),
        },
        { requiredKeys: ['user_id', 'tool_ref'] },
      ),
    },
  )
  const statuses = new Map<number, number>()

  for (const path of ['/tools/auth-status', '/tools/list-tools', '/tools/call-tool'] as const) {
    it(`${path}: ${RUNS} arbitrary bodies`, async () => {
      await fc.assert(
        fc.asyncProperty(body, fc.constantFrom(TEST_API_KEY, OTHER_TENANT_KEY), async (value, key) => {
          const answer = await sendChecked(relay, tally, post(path, JSON.stringify(value), { authorization: `Bearer ${key}`, 'content-type': 'application/json' }))
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
          if (answer.status === 200 && path === '/tools/call-tool') {
            expect(typeof answer.json.ok).toBe('boolean')
            if (answer.json.ok === false) expect(answer.json.error_code).toMatch(/^(NOT_AUTHORIZED|UPSTREAM_ERROR|TIMEOUT|UNKNOWN_TOOL)$/)
          }
          if (answer.status === 200 && path !== '/tools/call-tool') expect(Array.isArray(answer.json.errors)).toBe(true)
        }),
        { seed: 20_261_126, numRuns: RUNS, endOnFailure: true },
      )
    }, 60_000)
  }

  afterAll(() => {
    console.info(`[battery] fuzz statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
  })
})

describe('signed user ids (RELAY_USER_SECRET)', () => {
  it('refuses every forged, altered, expired or malformed one with 401, and takes a good one', async () => {
    const secret = 's'.repeat(40)
    const signed = await startRelay({
      servers: [{ server_id: 'open', description: 'Open server', mcp_url: open.url }],
      env: { RELAY_USER_SECRET: secret },
    })
    try {
      const good = signUserId(secret, 'carol', 600)
      const [id, expiry, signature] = [good.slice(0, good.indexOf('.')), good.split('.')[1]!, good.split('.')[2]!]
      const forged: Record<string, string> = {
        'plain id': 'carol',
        'other secret': signUserId('t'.repeat(40), 'carol', 600),
        'other id, same signature': `mallory.${expiry}.${signature}`,
        'later expiry, same signature': `${id}.${Number(expiry) + 3600}.${signature}`,
        expired: signUserId(secret, 'carol', -10),
        'empty signature': `${id}.${expiry}.`,
        'signature cut short': good.slice(0, -2),
        // (A padded or otherwise non-canonical base64url of the right signature decodes to the
        // same bytes: the same id and expiry, so nothing is gained; it is not listed here.)
        'expiry not a number': `${id}.soon.${signature}`,
        'huge expiry': `${id}.${'9'.repeat(40)}.${signature}`,
        'only dots': '...',
        'dots around': `.${good}.`,
        'id with dots, re-split': `car.ol.${expiry}.${signature}`,
      }
      for (const [name, userId] of Object.entries(forged)) {
        const answer = await sendChecked(signed, tally, post('/tools/call-tool', { user_id: userId, tool_ref: 'open::whoami', input: {} }), name)
        expect(answer.status, name).toBe(userId.length > 256 ? 400 : 401)
      }
      const ok = await sendChecked(signed, tally, post('/tools/call-tool', { user_id: good, tool_ref: 'open::echo', input: { text: 'signed' } }))
      expect(ok.json.ok).toBe(true)
    } finally {
      await signed.close()
    }
  })
})

describe('afterwards', () => {
  it('the signed-in users still work, each as themselves, and the relay is alive', async () => {
    expect((await whoami(relay, 'alice')).sub).toBe('alice')
    expect((await whoami(relay, 'bob', { apiKey: OTHER_TENANT_KEY })).sub).toBe('bob')
    // Nobody else got their tokens: the same user_ids under the other tenant are not signed in.
    expect((await whoami(relay, 'alice', { apiKey: OTHER_TENANT_KEY })).body.error_code).toBe('NOT_AUTHORIZED')
    expect((await whoami(relay, 'bob')).body.error_code).toBe('NOT_AUTHORIZED')
    const health = await send(relay, { method: 'GET', path: '/healthz' })
    expect(health.status).toBe(200)
    expect(tally.serverErrors()).toBe(0)
  })
})
