import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { MODERN_PICTURE_BYTES, startModernUpstream, type ModernUpstream } from '../peers/modern-upstream.ts'
import { startRawModernServer, type RawModernServer } from '../peers/raw-modern-server.ts'
import { REDIS_URL } from '../support/services.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

// MCP 2026-07-28 through the relay's routes, against a stateless server built with
// @modelcontextprotocol/server 2.x, beside a 2025-era server (SDK 1.x) in the same relay.

const USER = { user_id: 'mona' }

describe('an open 2026-07-28 server beside a 2025-era one', () => {
  let modern: ModernUpstream
  let shared: ModernUpstream
  let legacy: McpUpstream
  let relay: TestRelay

  beforeAll(async () => {
    ;[modern, shared, legacy] = await Promise.all([
      startModernUpstream(),
      startModernUpstream({ listHints: { ttlMs: 60_000, cacheScope: 'public' } }),
      startMcpUpstream(),
    ])
    relay = await startRelay({
      servers: [
        { server_id: 'modern', description: 'A 2026-07-28 server', mcp_url: modern.url },
        { server_id: 'shared', mcp_url: shared.url },
        { server_id: 'legacy', mcp_url: legacy.url },
        { server_id: 'hasty', mcp_url: shared.url, timeout_seconds: 3 },
      ],
    })
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([modern?.close(), shared?.close(), legacy?.close()])
  })

  const call = (tool_ref: string, input: object = {}, extra: object = {}, user = USER) =>
    relay.post('/tools/call-tool', { ...user, tool_ref, input, ...extra })

  it('asks each server its revision once, then speaks it: server/discover and stateless calls, or a 2025 session', async () => {
    const listed = await relay.post('/tools/list-tools', USER)
    expect(listed.body.errors).toEqual([])
    const names = (serverId: string) => listed.body.tools.filter((tool: { server_id: string }) => tool.server_id === serverId).map((tool: { name: string }) => tool.name)
    expect(names('modern')).toEqual(expect.arrayContaining(['echo', 'greet', 'regional', 'described']))
    expect(names('legacy')).toEqual(expect.arrayContaining(['echo', 'whoami']))
    expect((await call('modern::echo', { text: 'hi' })).body).toMatchObject({ ok: true, result: { content: [{ type: 'text', text: 'hi' }] } })
    expect((await call('legacy::echo', { text: 'hi' })).body).toMatchObject({ ok: true })

    const methods = modern.seen.map((request) => request.mcpMethod ?? 'none')
    expect(methods.filter((method) => method === 'server/discover')).toHaveLength(1)
    expect(methods).not.toContain('initialize')
    expect(await relay.deps.eras.get(relay.deps.config.servers.get('modern')!)).toMatchObject({ era: 'modern' })
    expect(await relay.deps.eras.get(relay.deps.config.servers.get('legacy')!)).toEqual({ era: 'legacy' })
  })

  it('sends every request its revision, client info and capabilities in _meta and the standard headers', async () => {
    await call('modern::echo', { text: 'headers' })
    const request = modern.seen.filter((seen) => seen.mcpMethod === 'tools/call').at(-1)!
    expect(request.protocolVersion).toBe('2026-07-28')
    expect(request.mcpName).toBe('echo')
    expect(request.meta).toMatchObject({
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'mcp-auth-relay' },
      'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {}, url: {} } },
    })
    const capabilities = request.meta!['io.modelcontextprotocol/clientCapabilities'] as Record<string, unknown>
    expect(Object.keys(capabilities)).toEqual(['elicitation'])
  })

  it('a warm call is one HTTP request on a kept-alive connection, and every user of the server shares one client (no per-user session)', async () => {
    for (const user of ['w1', 'w2', 'w3']) await call('modern::echo', { text: 'warm' }, {}, { user_id: user })
    const before = modern.seen.length
    const connections = modern.counters.connections
    for (const user of ['w1', 'w2', 'w3']) expect((await call('modern::echo', { text: 'warm' }, {}, { user_id: user })).body.ok).toBe(true)
    expect(modern.seen.slice(before).map((request) => request.mcpMethod)).toEqual(['tools/call', 'tools/call', 'tools/call'])
    expect(modern.counters.connections).toBe(connections)
    // One pooled client for the 2026-07-28 server however many users; a session per user for the 2025-era one.
    const pooled = relay.deps.pool.size()
    await call('legacy::echo', { text: 'x' }, {}, { user_id: 'w1' })
    await call('legacy::echo', { text: 'x' }, {}, { user_id: 'w2' })
    expect(relay.deps.pool.size()).toBe(pooled + 2)
  })

  it('a new user\'s first call is one HTTP request too, with its headers, once any user\'s list of the server is known (lists private to each user)', async () => {
    await relay.post('/tools/list-tools', { user_id: 'lister', server_id: 'modern' })
    const before = modern.seen.length
    const answer = await call('modern::regional', { region: 'ap-south1', query: 'count' }, {}, { user_id: 'newcomer' })
    expect(answer.body).toMatchObject({ ok: true, result: { content: [{ text: 'count in ap-south1' }] } })
    const seen = modern.seen.slice(before)
    expect(seen.map((request) => request.mcpMethod)).toEqual(['tools/call'])
    expect(seen[0]!.params).toEqual({ 'mcp-param-region': 'ap-south1' })
  })

  it('mirrors x-mcp-header arguments into Mcp-Param headers, and leaves out a tool whose declaration is invalid (SEP-2243)', async () => {
    const answer = await call('modern::regional', { region: 'eu-west1', query: 'count' })
    expect(answer.body).toMatchObject({ ok: true, result: { content: [{ text: 'count in eu-west1' }] } })
    expect(modern.seen.filter((seen) => seen.mcpName === 'regional').at(-1)!.params).toEqual({ 'mcp-param-region': 'eu-west1' })
    const listed = await relay.post('/tools/list-tools', { ...USER, server_id: 'modern' })
    expect(listed.body.tools.map((tool: { name: string }) => tool.name)).not.toContain('misdeclared')
  })

  it('honours the caching hints: a public list with a ttl is served from the cache for everyone; the default (ttl 0, private) never', async () => {
    const lists = (server: ModernUpstream) => server.seen.filter((seen) => seen.mcpMethod === 'tools/list').length
    await relay.deps.toolCache.drop('server:shared')
    const listedBefore = lists(shared)
    const first = await relay.post('/tools/list-tools', { user_id: 'hint-a', server_id: 'shared' })
    expect(first.body.servers).toEqual([{ server_id: 'shared', source: 'upstream', tool_count: expect.any(Number) }])
    const second = await relay.post('/tools/list-tools', { user_id: 'hint-b', server_id: 'shared' })
    expect(second.body.servers[0].source).toBe('cache')
    expect(lists(shared)).toBe(listedBefore + 1)

    const before = lists(modern)
    for (const user of ['hint-a', 'hint-a', 'hint-b']) {
      expect((await relay.post('/tools/list-tools', { user_id: user, server_id: 'modern' })).body.servers[0].source).toBe('upstream')
    }
    expect(lists(modern)).toBe(before + 3)
  })

  it('passes on tool metadata, and answers TIMEOUT past the server\'s timeout', async () => {
    const listed = await relay.post('/tools/list-tools', { ...USER, server_id: 'modern' })
    expect(listed.body.tools.find((tool: { name: string }) => tool.name === 'described')).toMatchObject({
      title: 'Described by the v2 SDK',
      annotations: { readOnlyHint: true, destructiveHint: false },
      outputSchema: { type: 'object', properties: { total: { type: 'number' } } },
    })
    const slow = await call('hasty::slow', { ms: 10_000 })
    expect(slow.body).toMatchObject({ ok: false, error_code: 'TIMEOUT', message: 'hasty did not answer in time.' })
  })

  it('keeps large binary content aside as a link, and checks structured results against the output schema', async () => {
    const picture = await call('modern::picture')
    expect(picture.body.result.content[0]).toMatchObject({ type: 'image', omitted: true, size_bytes: MODERN_PICTURE_BYTES, url: expect.stringContaining('/files/') })
    expect((await call('modern::described')).body).toMatchObject({ ok: true, result: { structuredContent: { total: 3 } } })
  })

  it('asks the user through the chat: USER_INPUT_REQUIRED, a wrong answer, another user, a changed input, the answer, a reused ref', async () => {
    const asked = await call('modern::greet', { formal: true })
    expect(asked.status).toBe(200)
    expect(asked.body).toMatchObject({
      ok: false,
      error_code: 'USER_INPUT_REQUIRED',
      status: 'need_user_input',
      server_id: 'modern',
      input_ref: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      input_requests: [{ key: 'name', kind: 'form', message: 'What is your name?', fields: { name: { type: 'string', title: 'Your name', minLength: 1 } }, required: ['name'] }],
    })
    const ref = asked.body.input_ref as string
    const firstRequest = modern.seen.filter((seen) => seen.mcpName === 'greet').at(-1)!

    const wrong = await call('modern::greet', { formal: true }, { input_ref: ref, input_response: { name: 42 } })
    expect(wrong.status).toBe(400)
    expect(wrong.body.error).toEqual({ code: 'INVALID_INPUT', message: 'input_response.name: must be a string' })
    const missing = await call('modern::greet', { formal: true }, { input_ref: ref, input_response: {} })
    expect(missing.body.error.message).toBe('input_response.name: is required')
    const otherUser = await call('modern::greet', { formal: true }, { input_ref: ref, input_response: { name: 'Eve' } }, { user_id: 'eve' })
    expect(otherUser.body.error).toEqual({ code: 'INVALID_INPUT', message: expect.stringContaining('unknown or expired input_ref') })
    const otherInput = await call('modern::greet', { formal: false }, { input_ref: ref, input_response: { name: 'Zed' } })
    expect(otherInput.body.error.message).toContain('unknown or expired input_ref')

    // The refused attempts used nothing up: the answer goes through, with the server's state as it was.
    const answered = await call('modern::greet', { formal: true }, { input_ref: ref, input_response: '{"name": "Zed"}' })
    expect(answered.body).toMatchObject({ ok: true, result: { structuredContent: { greeting: 'Good day, Zed!' }, isError: false } })
    const retry = modern.seen.filter((seen) => seen.mcpName === 'greet').at(-1)!
    expect(retry.requestState).toBe('greet-round-1')
    expect(retry.inputResponses).toEqual({ name: { action: 'accept', content: { name: 'Zed' } } })
    expect(retry.id).not.toEqual(firstRequest.id)

    const reused = await call('modern::greet', { formal: true }, { input_ref: ref, input_response: { name: 'Zed' } })
    expect(reused.body.error.message).toContain('unknown or expired input_ref')
  })

  it('sends "decline" as that action, and several requests answered by key, without a requestState the server did not give', async () => {
    const asked = await call('modern::greet')
    const declined = await call('modern::greet', {}, { input_ref: asked.body.input_ref, input_response: 'decline' })
    expect(declined.body).toMatchObject({ ok: true, result: { isError: true, structuredContent: { greeting: '(decline)' } } })

    const paint = await call('modern::paint')
    expect(paint.body.input_requests.map((request: { key: string }) => request.key)).toEqual(['name', 'colour'])
    expect(paint.body.input_requests[1].fields.colour).toEqual({ type: 'string', enum: ['red', 'green', 'blue'] })
    const badColour = await call('modern::paint', {}, { input_ref: paint.body.input_ref, input_response: { name: { name: 'Ada' }, colour: { colour: 'pink' } } })
    expect(badColour.body.error.message).toBe('input_response.colour.colour: must be one of red, green, blue')
    const painted = await call('modern::paint', {}, { input_ref: paint.body.input_ref, input_response: { name: { name: 'Ada' }, colour: { colour: 'green', shade: 3 } } })
    expect(painted.body).toMatchObject({ ok: true, result: { content: [{ text: 'Ada paints in green shade 3.' }] } })
    const retry = modern.seen.filter((seen) => seen.mcpName === 'paint').at(-1)!
    expect(retry.requestState).toBeUndefined()
  })

  it('passes a URL request on as USER_ACTION_REQUIRED with an input_ref, and continues once the user is done', async () => {
    const asked = await call('modern::consent')
    expect(asked.body).toMatchObject({ error_code: 'USER_ACTION_REQUIRED', action_url: 'https://consent.example.com/approve?id=7', input_ref: expect.any(String) })
    const done = await call('modern::consent', {}, { input_ref: asked.body.input_ref, input_response: 'accept' })
    expect(done.body).toMatchObject({ ok: true, result: { content: [{ text: 'Approved.' }] } })
  })

  it('retries a round without requests at once, and stops a server that keeps asking', async () => {
    expect((await call('modern::stateful')).body).toMatchObject({ ok: true, result: { content: [{ text: 'done in two passes' }] } })
    let answer = await call('modern::pester')
    for (let round = 1; answer.body.error_code === 'USER_INPUT_REQUIRED'; round++) {
      expect(round).toBeLessThanOrEqual(5)
      answer = await call('modern::pester', {}, { input_ref: answer.body.input_ref, input_response: { ok: true } })
    }
    expect(answer.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', message: expect.stringContaining('after 5 rounds') })
  })
})

describe('the protocol setting, and a server that changes revision', () => {
  let modern: ModernUpstream
  let legacy: McpUpstream
  let relay: TestRelay

  beforeAll(async () => {
    ;[modern, legacy] = await Promise.all([startModernUpstream(), startMcpUpstream()])
    relay = await startRelay({
      servers: [
        { server_id: 'upgraded', mcp_url: modern.url },
        { server_id: 'old-only', mcp_url: modern.url, protocol: '2025-11-25' },
        { server_id: 'new-only', mcp_url: legacy.url, protocol: '2026-07-28' },
        { server_id: 'pinned', mcp_url: modern.url, protocol: '2026-07-28' },
      ],
    })
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([modern?.close(), legacy?.close()])
  })

  const echo = (serverId: string) => relay.post('/tools/call-tool', { user_id: 'pat', tool_ref: `${serverId}::echo`, input: { text: 'hi' } })

  it('asks a server again when it stops answering in the revision it was taken for', async () => {
    const server = relay.deps.config.servers.get('upgraded')!
    // As if the server had spoken 2025-11-25 when it was first asked, and was upgraded since.
    await relay.deps.eras.probe(server, async () => ({ era: 'legacy' }))
    expect((await echo('upgraded')).body).toMatchObject({ ok: true, result: { content: [{ text: 'hi' }] } })
    expect(await relay.deps.eras.get(server)).toMatchObject({ era: 'modern' })
  })

  it('speaks only the configured revision: 2025-11-25 never probes, 2026-07-28 insists; anything else is that server\'s error', async () => {
    const discovers = modern.seen.filter((seen) => seen.mcpMethod === 'server/discover').length
    expect((await echo('old-only')).body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(modern.seen.filter((seen) => seen.mcpMethod === 'server/discover').length).toBe(discovers)
    expect((await echo('new-only')).body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(legacy.counters.initialize).toBe(0)
    expect((await echo('pinned')).body).toMatchObject({ ok: true })
  })
})

describe('a 2026-07-28 server written by hand (what the SDK would not send)', () => {
  let raw: RawModernServer
  let relay: TestRelay
  let neitherCalls = 0

  beforeAll(async () => {
    raw = await startRawModernServer({
      // SEP-2322: a result without resultType is complete.
      plain: () => ({ content: [{ type: 'text', text: 'plain answer' }] }),
      // roots/list, which the relay never declared: answered with no roots, at once.
      roots: ({ inputResponses }) =>
        inputResponses?.roots
          ? { resultType: 'complete', content: [{ type: 'text', text: `roots: ${(inputResponses.roots as { roots: unknown[] }).roots.length}` }] }
          : { resultType: 'input_required', inputRequests: { roots: { method: 'roots/list' } } },
      // Neither requests nor state: nothing to answer, so the call is retried at once.
      neither: () => (++neitherCalls === 1 ? { resultType: 'input_required' } : { resultType: 'complete', content: [{ type: 'text', text: 'second try' }] }),
      sampling: () => ({
        resultType: 'input_required',
        inputRequests: { summary: { method: 'sampling/createMessage', params: { messages: [], maxTokens: 10 } } },
      }),
    })
    relay = await startRelay({ servers: [{ server_id: 'raw', mcp_url: raw.url }] })
  })

  afterAll(async () => {
    await relay?.close()
    await raw?.close()
  })

  const call = (tool: string) => relay.post('/tools/call-tool', { user_id: 'rae', tool_ref: `raw::${tool}`, input: {} })

  it('reads a result without resultType as complete', async () => {
    expect((await call('plain')).body).toMatchObject({ ok: true, result: { content: [{ text: 'plain answer' }] } })
  })

  it('answers roots/list itself with no roots, and retries an input_required result without requests or state', async () => {
    expect((await call('roots')).body).toMatchObject({ ok: true, result: { content: [{ text: 'roots: 0' }] } })
    expect(raw.requests.filter((request) => request.params?.name === 'roots').at(-1)!.params?.inputResponses).toEqual({ roots: { roots: [] } })
    expect((await call('neither')).body).toMatchObject({ ok: true, result: { content: [{ text: 'second try' }] } })
  })

  it('turns a sampling request down: no question reaches the model, the call ends with an error', async () => {
    const answer = await call('sampling')
    expect(answer.body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR', message: expect.stringContaining('no language model') })
  })
})

describe('an input_ref issued on one replica, completed on another (Redis)', () => {
  let modern: ModernUpstream
  let a: TestRelay
  let b: TestRelay

  beforeAll(async () => {
    modern = await startModernUpstream()
    const env = { STORE_URL: REDIS_URL, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }
    const storeKeyPrefix = `modern-${randomBytes(6).toString('hex')}`
    const servers = [{ server_id: 'modern', mcp_url: modern.url }]
    a = await startRelay({ servers, env, storeKeyPrefix })
    b = await startRelay({ servers, env, storeKeyPrefix })
  })

  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()])
    await modern?.close()
  })

  it('continues the call on the other replica, with the state and a JSON-RPC id of its own', async () => {
    const asked = await a.post('/tools/call-tool', { user_id: 'rita', tool_ref: 'modern::greet', input: {} })
    expect(asked.body.error_code).toBe('USER_INPUT_REQUIRED')
    const first = modern.seen.filter((seen) => seen.mcpName === 'greet').at(-1)!
    const answered = await b.post('/tools/call-tool', { user_id: 'rita', tool_ref: 'modern::greet', input: {}, input_ref: asked.body.input_ref, input_response: { name: 'Rita' } })
    expect(answered.body).toMatchObject({ ok: true, result: { structuredContent: { greeting: 'Hello, Rita!' } } })
    const retry = modern.seen.filter((seen) => seen.mcpName === 'greet').at(-1)!
    expect(retry.requestState).toBe('greet-round-1')
    expect(retry.id).not.toEqual(first.id)
    // B knew the server's revision from the store: it did not ask again.
    expect(modern.seen.filter((seen) => seen.mcpMethod === 'server/discover')).toHaveLength(1)
  })
})

describe('a protected 2026-07-28 server with oidc-provider', () => {
  let as: AuthorizationServer
  let shortLived: AuthorizationServer
  let modern: ModernUpstream
  let expiring: ModernUpstream
  let relay: TestRelay

  beforeAll(async () => {
    ;[as, shortLived] = await Promise.all([startAuthorizationServer(), startAuthorizationServer({ accessTokenTtlSeconds: 2 })])
    ;[modern, expiring] = await Promise.all([startModernUpstream({ auth: { issuer: as.issuer } }), startModernUpstream({ auth: { issuer: shortLived.issuer } })])
    relay = await startRelay({
      servers: [
        { server_id: 'secure', mcp_url: modern.url },
        { server_id: 'expiring', mcp_url: expiring.url },
      ],
      env: { OAUTH_TRUSTED_HOSTS: '127.0.0.1' },
    })
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([modern?.close(), expiring?.close(), as?.close(), shortLived?.close()])
  })

  const whoami = (user: string, serverId = 'secure') => relay.post('/tools/call-tool', { user_id: user, tool_ref: `${serverId}::whoami`, input: {} })

  async function signIn(user: string, serverId: string) {
    const asked = await whoami(user, serverId)
    expect(asked.body.error_code).toBe('NOT_AUTHORIZED')
    expect((await signInThroughBrowser(asked.body.login_url, user)).status).toBe(200)
  }

  it('signs each user in and calls with their own token on one shared client, and steps up on 403', async () => {
    const status = await relay.post('/tools/auth-status', { user_id: 'sam', server_id: 'secure' })
    expect(status.body.servers[0]).toMatchObject({ status: 'need_auth', login_url: expect.any(String) })
    for (const user of ['sam', 'tia']) {
      await signIn(user, 'secure')
      expect((await whoami(user)).body).toMatchObject({ ok: true, result: { structuredContent: { sub: user } } })
    }
    // One client serves both users: interleaved calls each carry their own user's token.
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => whoami(i % 2 === 0 ? 'sam' : 'tia')))
    answers.forEach((answer, i) => expect(answer.body.result?.structuredContent, JSON.stringify(answer.body)).toEqual({ sub: i % 2 === 0 ? 'sam' : 'tia' }))

    modern.setScopesRequiredFor('whoami', ['mcp:admin'])
    const stepUp = await whoami('tia')
    expect(stepUp.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', message: expect.stringContaining('mcp:admin') })
  })

  it('refreshes an expired token (2 s), before the call or on the 401', async () => {
    await signIn('uma', 'expiring')
    const refreshes = shortLived.refreshCount('uma')
    await expect
      .poll(async () => (await whoami('uma', 'expiring')).body.ok === true && shortLived.refreshCount('uma') > refreshes, { timeout: 15_000, interval: 250 })
      .toBe(true)
  })
})
