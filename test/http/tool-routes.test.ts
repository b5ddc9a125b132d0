import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RelayError } from '../../src/errors.ts'
import { ACME_KEY, GLOBEX_KEY, bearer, makeApp, type RecordedCall } from './helpers.ts'

const ROUTES = ['/tools/auth-status', '/tools/list-tools', '/tools/call-tool', '/oauth/reset'] as const
type Route = (typeof ROUTES)[number]

/** The smallest valid body per route. */
const VALID: Record<Route, Record<string, unknown>> = {
  '/tools/auth-status': { user_id: 'u1' },
  '/tools/list-tools': { user_id: 'u1' },
  '/tools/call-tool': { user_id: 'u1', tool_ref: 'docs::search', input: '{}' },
  '/oauth/reset': { user_id: 'u1' },
}

let app: FastifyInstance
let calls: RecordedCall[]

beforeAll(async () => {
  ;({ app, calls } = await makeApp())
})
afterAll(async () => {
  await app.close()
})

async function post(route: string, body: unknown, headers: Record<string, string> = bearer(ACME_KEY)) {
  calls.length = 0
  return app.inject({ method: 'POST', url: route, headers, payload: body as Record<string, unknown> })
}

function expectError(response: { statusCode: number; json: () => any; headers: Record<string, unknown> }, status: number, code: string, message: RegExp) {
  expect(response.statusCode).toBe(status)
  expect(response.headers['content-type']).toMatch(/^application\/json/)
  const body = response.json()
  expect(Object.keys(body)).toEqual(['error'])
  expect(body.error.code).toBe(code)
  expect(body.error.message).toMatch(message)
}

describe('bad bodies on every API-key route', () => {
  const badBodies: Array<[string, (route: Route) => unknown, RegExp]> = [
    ['missing user_id', (route) => ({ ...VALID[route], user_id: undefined }), /^user_id: is required$/],
    ['user_id a number', (route) => ({ ...VALID[route], user_id: 42 }), /^user_id: must be a string$/],
    ['user_id null', (route) => ({ ...VALID[route], user_id: null }), /^user_id: must be a string$/],
    ['user_id blank', (route) => ({ ...VALID[route], user_id: '   ' }), /^user_id: must not be empty$/],
    ['user_id too long', (route) => ({ ...VALID[route], user_id: 'u'.repeat(257) }), /^user_id: must be at most 256 characters$/],
    ['user_id with a newline', (route) => ({ ...VALID[route], user_id: 'u1\nadmin' }), /^user_id: must not contain control characters$/],
    ['user_id with NUL', (route) => ({ ...VALID[route], user_id: 'u1\u0000' }), /^user_id: must not contain control characters$/],
    ['server_id a number', (route) => ({ ...VALID[route], server_id: 7, tool_ref: undefined }), /^(server_id: must be a string|tool_ref: is required)$/],
  ]
  for (const route of ROUTES) {
    for (const [name, body, message] of badBodies) {
      it(`${route}: ${name} → 400 INVALID_INPUT`, async () => {
        const response = await post(route, body(route))
        expectError(response, 400, 'INVALID_INPUT', message)
        expect(calls).toEqual([])
      })
    }
  }
})

describe('bodies that are not JSON objects, on every API-key route', () => {
  const raw: Array<[string, { payload?: string; contentType?: string }, number, string, RegExp]> = [
    ['a JSON array', { payload: '[{"user_id":"u1"}]', contentType: 'application/json' }, 400, 'INVALID_INPUT', /^the body must be a JSON object$/],
    ['a JSON string', { payload: '"u1"', contentType: 'application/json' }, 400, 'INVALID_INPUT', /^the body must be a JSON object$/],
    ['JSON null', { payload: 'null', contentType: 'application/json' }, 400, 'INVALID_INPUT', /^the body must be a JSON object$/],
    ['a JSON number', { payload: '12', contentType: 'application/json' }, 400, 'INVALID_INPUT', /^the body must be a JSON object$/],
    ['malformed JSON', { payload: '{"user_id": "u1",', contentType: 'application/json' }, 400, 'INVALID_INPUT', /not valid JSON/],
    ['an empty JSON body', { payload: '', contentType: 'application/json' }, 400, 'INVALID_INPUT', /it was empty/],
    ['no body at all', {}, 400, 'INVALID_INPUT', /^the body must be a JSON object$/],
    ['text/plain', { payload: '{"user_id":"u1"}', contentType: 'text/plain' }, 400, 'INVALID_INPUT', /Content-Type: application\/json/],
    ['a form post', { payload: 'user_id=u1', contentType: 'application/x-www-form-urlencoded' }, 400, 'INVALID_INPUT', /Content-Type: application\/json/],
    ['__proto__ poisoning', { payload: '{"user_id":"u1","__proto__":{"x":1}}', contentType: 'application/json' }, 400, 'INVALID_INPUT', /not valid JSON/],
    ['a 2 MB body', { payload: JSON.stringify({ user_id: 'u1', pad: 'x'.repeat(2 * 1024 * 1024) }), contentType: 'application/json' }, 413, 'PAYLOAD_TOO_LARGE', /1 MiB/],
  ]
  for (const route of ROUTES) {
    for (const [name, { payload, contentType }, status, code, message] of raw) {
      it(`${route}: ${name} → ${status} ${code}`, async () => {
        calls.length = 0
        const headers: Record<string, string> = { ...bearer(ACME_KEY) }
        if (contentType) headers['content-type'] = contentType
        const response = await app.inject({ method: 'POST', url: route, headers, ...(payload === undefined ? {} : { payload }) })
        expectError(response, status, code, message)
        expect(calls).toEqual([])
      })
    }
  }
})

describe('API key on every API-key route', () => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no Authorization header', {}, /API key is required/],
    ['a wrong key', bearer('not-the-key-0123456789'), /API key is not valid/],
    ['a key with one character changed', bearer(ACME_KEY.slice(0, -1) + 'X'), /API key is not valid/],
    ['HTTP Basic credentials, base64(tenant:key)', { authorization: `Basic ${Buffer.from(`acme:${ACME_KEY}`).toString('base64')}` }, /API key is not valid/],
    ['the key base64-encoded after Basic', { authorization: `Basic ${Buffer.from(ACME_KEY).toString('base64')}` }, /API key is not valid/],
    ['an empty Bearer', { authorization: 'Bearer ' }, /API key is required/],
  ]
  for (const route of ROUTES) {
    for (const [name, headers, message] of cases) {
      it(`${route}: ${name} → 401 with a Bearer challenge`, async () => {
        const response = await post(route, VALID[route], headers)
        expectError(response, 401, 'UNAUTHORIZED', message)
        expect(response.headers['www-authenticate']).toBe('Bearer')
        expect(calls).toEqual([])
      })
    }
    it(`${route}: a missing key wins over a bad body (checked before the body is read)`, async () => {
      const response = await post(route, { nonsense: true }, {})
      expect(response.statusCode).toBe(401)
    })
  }
})

describe('tenant from the API key name', () => {
  for (const [key, tenant] of [
    [ACME_KEY, 'acme'],
    [GLOBEX_KEY, 'globex'],
  ] as const) {
    for (const route of ROUTES) {
      it(`${route}: the ${tenant} key reaches the relay as tenant ${tenant}`, async () => {
        const response = await post(route, { ...VALID[route], user_id: '  user-7 ' }, bearer(key))
        expect(response.statusCode).toBe(200)
        expect(calls).toHaveLength(1)
        expect(calls[0]!.caller).toEqual({ tenant, userId: 'user-7' })
      })
    }
  }
  it('accepts a lower-case "bearer" scheme', async () => {
    const response = await post('/tools/auth-status', { user_id: 'u1' }, { authorization: `bearer ${GLOBEX_KEY}` })
    expect(response.statusCode).toBe(200)
    expect(calls[0]!.caller!.tenant).toBe('globex')
  })
  // What Dify's credential form sends with its prefixes Basic and Custom (DESIGN.md §3).
  for (const [name, authorization] of [
    ['Basic <key>', `Basic ${GLOBEX_KEY}`],
    ['the bare key', GLOBEX_KEY],
  ] as const) {
    for (const route of ROUTES) {
      it(`${route}: accepts ${name}, as the same tenant`, async () => {
        const response = await post(route, VALID[route], { authorization })
        expect(response.statusCode).toBe(200)
        expect(calls[0]!.caller).toEqual({ tenant: 'globex', userId: 'u1' })
      })
    }
  }
})

describe('POST /tools/auth-status', () => {
  const accepted: Array<[string, Record<string, unknown>, { serverIds: string[] | undefined; forceReauth: boolean }]> = [
    ['nothing optional', {}, { serverIds: undefined, forceReauth: false }],
    ['server_ids as an array', { server_ids: ['notion', 'docs'] }, { serverIds: ['notion', 'docs'], forceReauth: false }],
    ['server_ids as a JSON-array string', { server_ids: '["notion", "docs"]' }, { serverIds: ['notion', 'docs'], forceReauth: false }],
    ['server_ids as a comma list', { server_ids: 'notion, docs,' }, { serverIds: ['notion', 'docs'], forceReauth: false }],
    ['server_ids as a quoted comma list', { server_ids: '"notion", "docs"' }, { serverIds: ['notion', 'docs'], forceReauth: false }],
    ['server_ids as one id', { server_ids: 'docs' }, { serverIds: ['docs'], forceReauth: false }],
    ['server_ids empty', { server_ids: '' }, { serverIds: undefined, forceReauth: false }],
    ['server_ids "[]"', { server_ids: '[]' }, { serverIds: undefined, forceReauth: false }],
    ['server_ids null', { server_ids: null }, { serverIds: undefined, forceReauth: false }],
    ['server_id alone', { server_id: 'docs' }, { serverIds: ['docs'], forceReauth: false }],
    ['server_id empty', { server_id: '' }, { serverIds: undefined, forceReauth: false }],
    ['server_id and server_ids together', { server_id: 'docs', server_ids: 'notion,docs' }, { serverIds: ['docs', 'notion'], forceReauth: false }],
    ['force_reauth true', { force_reauth: true }, { serverIds: undefined, forceReauth: true }],
    ['force_reauth "true"', { force_reauth: 'true' }, { serverIds: undefined, forceReauth: true }],
    ['force_reauth "TRUE"', { force_reauth: 'TRUE' }, { serverIds: undefined, forceReauth: true }],
    ['force_reauth "1"', { force_reauth: '1' }, { serverIds: undefined, forceReauth: true }],
    ['force_reauth 1', { force_reauth: 1 }, { serverIds: undefined, forceReauth: true }],
    ['force_reauth "0"', { force_reauth: '0' }, { serverIds: undefined, forceReauth: false }],
    ['force_reauth "false"', { force_reauth: 'false' }, { serverIds: undefined, forceReauth: false }],
    ['force_reauth false', { force_reauth: false }, { serverIds: undefined, forceReauth: false }],
    ['force_reauth ""', { force_reauth: '' }, { serverIds: undefined, forceReauth: false }],
    ['unknown fields', { verbose: true, arguments: 3 }, { serverIds: undefined, forceReauth: false }],
  ]
  for (const [name, extra, expected] of accepted) {
    it(`accepts ${name}`, async () => {
      const response = await post('/tools/auth-status', { user_id: 'u1', ...extra })
      expect(response.statusCode).toBe(200)
      expect(calls).toEqual([{ method: 'authStatus', caller: { tenant: 'acme', userId: 'u1' }, request: expected }])
    })
  }

  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ['server_ids a number', { server_ids: 3 }, /^server_ids: must be a comma list, or a JSON or Python list of server ids$/],
    ['server_ids an array of numbers', { server_ids: [1, 2] }, /^server_ids: /],
    ['server_ids a JSON string of numbers', { server_ids: '[1, 2]' }, /^server_ids: /],
    ['server_ids malformed JSON', { server_ids: '["notion",' }, /^server_ids: /],
    ['server_ids an object', { server_ids: { notion: true } }, /^server_ids: /],
    ['force_reauth "maybe"', { force_reauth: 'maybe' }, /^force_reauth: must be true or false$/],
    ['force_reauth 2', { force_reauth: 2 }, /^force_reauth: must be true or false$/],
    ['force_reauth an object', { force_reauth: {} }, /^force_reauth: must be true or false$/],
  ]
  for (const [name, extra, message] of refused) {
    it(`refuses ${name}`, async () => {
      expectError(await post('/tools/auth-status', { user_id: 'u1', ...extra }), 400, 'INVALID_INPUT', message)
    })
  }

  it('answers 200 with the relay answer as it is', async () => {
    const response = await post('/tools/auth-status', { user_id: 'u1' })
    expect(response.json()).toMatchObject({ all_authorized: false, need_auth_server_ids: ['notion'] })
  })

  it('an unknown server_id is 400 UNKNOWN_SERVER', async () => {
    expectError(await post('/tools/auth-status', { user_id: 'u1', server_ids: 'nope' }), 400, 'UNKNOWN_SERVER', /nope/)
  })
})

describe('POST /tools/list-tools', () => {
  it('passes server_ids in every form', async () => {
    for (const serverIds of [['docs'], '["docs"]', 'docs', ' docs ']) {
      const response = await post('/tools/list-tools', { user_id: 'u1', server_ids: serverIds })
      expect(response.statusCode).toBe(200)
      expect(calls[0]!.request).toEqual({ serverIds: ['docs'] })
    }
  })
  it('ignores force_reauth and other fields it does not take', async () => {
    const response = await post('/tools/list-tools', { user_id: 'u1', force_reauth: 'nonsense', tool_ref: 3 })
    expect(response.statusCode).toBe(200)
    expect(calls[0]!.request).toEqual({ serverIds: undefined })
  })
})

describe('POST /tools/call-tool', () => {
  const accepted: Array<[string, Record<string, unknown>, { serverId: string; toolName: string; input: Record<string, unknown> }]> = [
    ['input as an object', { tool_ref: 'docs::search', input: { q: 'x', n: 2 } }, { serverId: 'docs', toolName: 'search', input: { q: 'x', n: 2 } }],
    ['input as a JSON-object string', { tool_ref: 'docs::search', input: '{"q": "x"}' }, { serverId: 'docs', toolName: 'search', input: { q: 'x' } }],
    ['input in a Markdown code fence', { tool_ref: 'docs::search', input: '```json\n{"q": "x"}\n```' }, { serverId: 'docs', toolName: 'search', input: { q: 'x' } }],
    ['input ""', { tool_ref: 'docs::search', input: '' }, { serverId: 'docs', toolName: 'search', input: {} }],
    ['input missing', { tool_ref: 'docs::search' }, { serverId: 'docs', toolName: 'search', input: {} }],
    ['the older name arguments (object)', { tool_ref: 'docs::search', arguments: { q: 'y' } }, { serverId: 'docs', toolName: 'search', input: { q: 'y' } }],
    ['the older name arguments (string)', { tool_ref: 'docs::search', arguments: '{"q":"y"}' }, { serverId: 'docs', toolName: 'search', input: { q: 'y' } }],
    ['input "" with arguments', { tool_ref: 'docs::search', input: '', arguments: { q: 'y' } }, { serverId: 'docs', toolName: 'search', input: { q: 'y' } }],
    ['input and arguments (input wins)', { tool_ref: 'docs::search', input: { q: 'x' }, arguments: { q: 'y' } }, { serverId: 'docs', toolName: 'search', input: { q: 'x' } }],
    ['tool_ref split at the first ::', { tool_ref: 'docs::b::c' }, { serverId: 'docs', toolName: 'b::c' , input: {} }],
    ['tool_ref with spaces around', { tool_ref: '  docs::search  ' }, { serverId: 'docs', toolName: 'search', input: {} }],
    ['unknown fields', { tool_ref: 'docs::search', server_id: 'notion', extra: [1] }, { serverId: 'docs', toolName: 'search', input: {} }],
  ]
  for (const [name, extra, expected] of accepted) {
    it(`accepts ${name}`, async () => {
      const response = await post('/tools/call-tool', { user_id: 'u1', ...extra })
      expect(response.statusCode).toBe(200)
      expect(calls).toEqual([{ method: 'callTool', caller: { tenant: 'acme', userId: 'u1' }, request: expected }])
    })
  }

  it('a::b::c reaches the relay as server a, tool b::c (an unknown server there: 400 UNKNOWN_SERVER)', async () => {
    const response = await post('/tools/call-tool', { user_id: 'u1', tool_ref: 'a::b::c' })
    expect(calls[0]!.request).toEqual({ serverId: 'a', toolName: 'b::c', input: {} })
    expectError(response, 400, 'UNKNOWN_SERVER', /"a"/)
  })

  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ['tool_ref missing', { input: '{}' }, /^tool_ref: is required$/],
    ['tool_ref empty', { tool_ref: '' }, /^tool_ref: is required$/],
    ['tool_ref a number', { tool_ref: 12 }, /^tool_ref: must be a string$/],
    ['tool_ref without ::', { tool_ref: 'docs.search' }, /^tool_ref: must be "server_id::tool_name"/],
    ['tool_ref "::"', { tool_ref: '::' }, /^tool_ref: must be "server_id::tool_name"/],
    ['tool_ref "a::"', { tool_ref: 'a::' }, /^tool_ref: must be "server_id::tool_name"/],
    ['tool_ref "::b"', { tool_ref: '::b' }, /^tool_ref: must be "server_id::tool_name"/],
    ['tool_ref with a single colon', { tool_ref: 'docs:search' }, /^tool_ref: /],
    [
      'input malformed JSON',
      { tool_ref: 'docs::search', input: '{"q": ' },
      /^input: must be a JSON object, or a string holding one as JSON or as a Python dict; the string is neither JSON nor a Python literal: it ends where a value should be \(character 6\)$/,
    ],
    ['input an array', { tool_ref: 'docs::search', input: [1, 2] }, /^input: must be a JSON object, or a string holding one as JSON or as a Python dict$/],
    ['input an array string', { tool_ref: 'docs::search', input: '[1, 2]' }, /^input: must be a JSON object/],
    ['input a number', { tool_ref: 'docs::search', input: 5 }, /^input: must be a JSON object/],
    ['input a number string', { tool_ref: 'docs::search', input: '5' }, /^input: must be a JSON object/],
    ['input null', { tool_ref: 'docs::search', input: null }, /^input: must be a JSON object/],
    ['input "null"', { tool_ref: 'docs::search', input: 'null' }, /^input: must be a JSON object/],
    ['input true', { tool_ref: 'docs::search', input: true }, /^input: must be a JSON object/],
    ['input a plain sentence', { tool_ref: 'docs::search', input: 'find the report' }, /^input: .*neither JSON nor a Python literal/],
    ['arguments an array (alias named)', { tool_ref: 'docs::search', arguments: '[]' }, /^arguments: must be a JSON object/],
  ]
  for (const [name, extra, message] of refused) {
    it(`refuses ${name}`, async () => {
      const response = await post('/tools/call-tool', { user_id: 'u1', ...extra })
      expectError(response, 400, 'INVALID_INPUT', message)
      expect(calls).toEqual([])
    })
  }
})

// Dify casts a value the model gave for a string parameter with Python's str() (DESIGN.md §4):
// each string below is what Python 3 writes for the JSON value beside it.
describe("Python literal syntax on every parameter (Dify's str() of what the model sent)", () => {
  const accepted: Array<[string, string, Record<string, unknown>, unknown]> = [
    ['input, a dict', '/tools/call-tool', { tool_ref: 'docs::search', input: "{'text': 'hi', 'n': 1, 'ok': True, 'x': None}" }, { serverId: 'docs', toolName: 'search', input: { text: 'hi', n: 1, ok: true, x: null } }],
    [
      'input, nested, with quotes, escapes and non-ASCII',
      '/tools/call-tool',
      { tool_ref: 'docs::search', input: `{'q': "it's", 'path': 'C:\\\\x', 'tags': ['a', 'é😀'], 'opts': {'limit': 2.5, 'nl': 'a\\nb\\x00'}}` },
      { serverId: 'docs', toolName: 'search', input: { q: "it's", path: 'C:\\x', tags: ['a', 'é😀'], opts: { limit: 2.5, nl: 'a\nb\x00' } } },
    ],
    ['input in a ```python fence', '/tools/call-tool', { tool_ref: 'docs::search', input: "```python\n{'q': 'x'}\n```" }, { serverId: 'docs', toolName: 'search', input: { q: 'x' } }],
    ['arguments (the older name), a dict', '/tools/call-tool', { tool_ref: 'docs::search', arguments: "{'q': 'y', 'all': False}" }, { serverId: 'docs', toolName: 'search', input: { q: 'y', all: false } }],
    ['server_ids, a list (auth-status)', '/tools/auth-status', { server_ids: "['notion', 'docs']" }, { serverIds: ['notion', 'docs'], forceReauth: false }],
    ['server_ids, a list (list-tools)', '/tools/list-tools', { server_ids: "['docs']" }, { serverIds: ['docs'] }],
    ['force_reauth True', '/tools/auth-status', { force_reauth: 'True' }, { serverIds: undefined, forceReauth: true }],
    ['force_reauth False', '/tools/auth-status', { force_reauth: 'False' }, { serverIds: undefined, forceReauth: false }],
    ['force_reauth None (not given: false)', '/tools/auth-status', { force_reauth: 'None' }, { serverIds: undefined, forceReauth: false }],
    ['force_reauth 1.0', '/tools/auth-status', { force_reauth: '1.0' }, { serverIds: undefined, forceReauth: true }],
  ]
  for (const [name, route, extra, expected] of accepted) {
    it(`${route} reads ${name}`, async () => {
      const response = await post(route, { user_id: 'u1', ...extra })
      expect(response.statusCode, response.body).toBe(200)
      expect(calls).toHaveLength(1)
      expect(calls[0]!.request).toEqual(expected)
    })
  }

  const refused: Array<[string, string, Record<string, unknown>, RegExp]> = [
    ['input, an unclosed dict', '/tools/call-tool', { tool_ref: 'docs::search', input: "{'text': 'hi'" }, /^input: must be a JSON object, or a string holding one as JSON or as a Python dict; the string is neither JSON nor a Python literal: a dict is not closed \(character 14\)$/],
    ['input, a list', '/tools/call-tool', { tool_ref: 'docs::search', input: "['a', 'b']" }, /^input: must be a JSON object, or a string holding one as JSON or as a Python dict$/],
    ['input holding inf', '/tools/call-tool', { tool_ref: 'docs::search', input: "{'limit': inf}" }, /^input: holds inf, which JSON cannot carry \(character 11\)$/],
    ['input, a call (never evaluated)', '/tools/call-tool', { tool_ref: 'docs::search', input: "__import__('os').getcwd()" }, /^input: .*neither JSON nor a Python literal: only True, False and None can stand unquoted \(character 1\)$/],
    ['arguments, an unclosed string (the alias named)', '/tools/call-tool', { tool_ref: 'docs::search', arguments: "{'q': 'y}" }, /^arguments: .*a string is not closed \(character 7\)$/],
    ['server_ids, a list holding a number', '/tools/auth-status', { server_ids: "['docs', 1]" }, /^server_ids: must be a comma list, or a JSON or Python list of server ids$/],
    ['server_ids, an unclosed list', '/tools/list-tools', { server_ids: "['docs', 'notion'" }, /^server_ids: must be a comma list, or a JSON or Python list of server ids; the string is neither JSON nor a Python literal: a list is not closed \(character 18\)$/],
    ['force_reauth, a string literal', '/tools/auth-status', { force_reauth: "'yes'" }, /^force_reauth: must be true or false$/],
    ['force_reauth, a list', '/tools/auth-status', { force_reauth: '[True]' }, /^force_reauth: must be true or false$/],
  ]
  for (const [name, route, extra, message] of refused) {
    it(`${route} refuses ${name}, naming the field`, async () => {
      const response = await post(route, { user_id: 'u1', ...extra })
      expectError(response, 400, 'INVALID_INPUT', message)
      expect(calls).toEqual([])
    })
  }
})

describe('POST /oauth/reset', () => {
  it('passes server_id, or undefined for every server', async () => {
    expect((await post('/oauth/reset', { user_id: 'u1', server_id: 'docs' })).json()).toMatchObject({ deleted_server_ids: ['docs'] })
    expect(calls[0]!.request).toEqual({ serverId: 'docs' })
    await post('/oauth/reset', { user_id: 'u1', server_id: '' })
    expect(calls[0]!.request).toEqual({ serverId: undefined })
    await post('/oauth/reset', { user_id: 'u1' })
    expect(calls[0]!.request).toEqual({ serverId: undefined })
  })
})

describe('relay failures', () => {
  // STORE_UNAVAILABLE on the three tool routes answers 200 ok: false (test/http/transient-faults.test.ts).
  it('/oauth/reset: RelayError STORE_UNAVAILABLE → 503 STORE_UNAVAILABLE', async () => {
    const { app: failing } = await makeApp({
      relay: {
        reset: () => {
          throw new RelayError('STORE_UNAVAILABLE', 'the token store does not answer')
        },
      },
    })
    const response = await failing.inject({ method: 'POST', url: '/oauth/reset', headers: bearer(ACME_KEY), payload: VALID['/oauth/reset'] })
    expectError(response, 503, 'STORE_UNAVAILABLE', /^the token store does not answer$/)
    await failing.close()
  })

  const failures: Array<[string, () => never, number, string, (message: string) => void]> = [
    [
      'RelayError UNKNOWN_SERVER',
      () => {
        throw new RelayError('UNKNOWN_SERVER', 'server_id "x" is not configured')
      },
      400,
      'UNKNOWN_SERVER',
      (message) => expect(message).toBe('server_id "x" is not configured'),
    ],
    [
      'an unexpected Error',
      () => {
        throw new Error('connect ECONNREFUSED 10.0.0.5:6379 password=hunter2 token=sk-live-123')
      },
      500,
      'INTERNAL',
      (message) => {
        expect(message).not.toMatch(/ECONNREFUSED|10\.0\.0\.5|hunter2|sk-live|6379/)
        expect(message).toMatch(/request id/)
      },
    ],
    [
      'a TypeError',
      () => {
        throw new TypeError("Cannot read properties of undefined (reading 'access_token')")
      },
      500,
      'INTERNAL',
      (message) => expect(message).not.toMatch(/access_token|undefined|TypeError/),
    ],
  ]
  for (const [name, fail, status, code, check] of failures) {
    for (const route of ROUTES) {
      it(`${route}: ${name} → ${status} ${code}`, async () => {
        const { app: failing } = await makeApp({
          relay: { authStatus: fail, listTools: fail, callTool: fail, reset: fail } as never,
        })
        const response = await failing.inject({ method: 'POST', url: route, headers: bearer(ACME_KEY), payload: VALID[route] })
        expectError(response, status, code, /./)
        check(response.json().error.message)
        await failing.close()
      })
    }
  }

  it('the INTERNAL message carries the request id, which is also in X-Request-Id', async () => {
    const { app: failing } = await makeApp({ relay: { authStatus: () => Promise.reject(new Error('boom')) } })
    const response = await failing.inject({ method: 'POST', url: '/tools/auth-status', headers: bearer(ACME_KEY), payload: { user_id: 'u1' } })
    const id = response.headers['x-request-id'] as string
    expect(id).toBeTruthy()
    expect(response.json().error.message).toContain(id)
    await failing.close()
  })
})
