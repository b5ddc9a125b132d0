// SIGN_IN_CONFIRMATION=code against oidc-provider and SDK MCP servers, through the relay's own
// routes with the scripted browser (the same flow in headless Chromium: test/browser/sign-in.test.ts).
// A sign-in completed in a browser is held until the chat gives the code that browser was shown.
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashConfirmationCode } from '../../src/relay/confirmation-code.ts'
import { captureLogLines } from '../battery/harness.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { claimRedisDatabase, type IsolatedStore } from '../support/isolated-stores.ts'
import { OTHER_TENANT_KEY, startRelay, type TestRelay } from '../support/relay.ts'

const CODE_SHAPE = /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/

let as: AuthorizationServer
let docs: McpUpstream
let wiki: McpUpstream
let relay: TestRelay
const logs = captureLogLines()
/** Every answer body the relay gave, for the scan at the end. */
const answers: string[] = []
/** Every confirmation code shown, with its owner. */
const codes: Array<{ userId: string; code: string }> = []

beforeAll(async () => {
  as = await startAuthorizationServer()
  ;[docs, wiki] = await Promise.all([startMcpUpstream({ auth: { issuer: as.issuer } }), startMcpUpstream({ auth: { issuer: as.issuer } })])
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Internal docs', mcp_url: docs.url },
      { server_id: 'wiki', description: 'Team wiki', mcp_url: wiki.url },
    ],
    env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, SIGN_IN_CONFIRMATION: 'code', LOG_LEVEL: 'trace' },
    logStream: logs.stream,
  })
})

afterAll(async () => {
  await relay?.close()
  await Promise.all([docs?.close(), wiki?.close(), as?.close()])
})

async function post(target: TestRelay, path: string, body: object, options: { apiKey?: string } = {}) {
  const answer = await target.post(path, body, options)
  expect(answer.status, JSON.stringify(answer.body)).toBe(200)
  answers.push(JSON.stringify(answer.body))
  return answer.body
}

const status = (userId: string, extra: object = {}, options: { apiKey?: string; target?: TestRelay } = {}) =>
  post(options.target ?? relay, '/tools/auth-status', { user_id: userId, server_id: 'docs', ...extra }, options).then((body) => body.servers[0])
const confirm = (userId: string, code: string, options: { apiKey?: string; target?: TestRelay; serverId?: string } = {}) =>
  post(options.target ?? relay, '/tools/auth-status', { user_id: userId, server_id: options.serverId ?? 'docs', confirm_code: code }, options).then(
    (body) => body.servers[0],
  )
const whoami = (userId: string, options: { apiKey?: string; target?: TestRelay } = {}) =>
  post(options.target ?? relay, '/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} }, options)

/** `userId`'s login link, completed in a browser signed in as `account`; returns the code that page showed. */
async function signInPending(userId: string, account = userId, options: { apiKey?: string; target?: TestRelay } = {}): Promise<string> {
  const entry = await status(userId, {}, options)
  expect(entry).toMatchObject({ status: 'need_auth', login_url: expect.any(String) })
  const page = await signInThroughBrowser(entry.login_url, account)
  expect(page.status, page.html).toBe(200)
  expect(page.html).toContain('give the assistant this confirmation code in your chat')
  const code = /id="confirmation-code">([^<]+)</.exec(page.html)?.[1]
  expect(code).toMatch(CODE_SHAPE)
  codes.push({ userId, code: code! })
  return code!
}

/** Another code of the same shape, certainly not `code`. */
function wrongCode(code: string, salt = 0): string {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
  const last = alphabet[(alphabet.indexOf(code.at(-1)!) + 1 + salt) % alphabet.length]!
  return `${code.slice(0, -1)}${last === code.at(-1) ? alphabet[(alphabet.indexOf(last) + 1) % 32] : last}`
}

function expectPending(entry: any, code: string) {
  expect(entry).toMatchObject({ status: 'need_auth', pending_confirmation: true })
  expect(entry).not.toHaveProperty('login_url')
  expect(entry.message).toContain('confirm_code')
  expect(entry.message).not.toContain(code)
}

describe('SIGN_IN_CONFIRMATION=code', () => {
  it('holds a completed sign-in until its code: every tool route says so, with no link and without the code', async () => {
    const code = await signInPending('pat')
    expect(await relay.deps.tokens.get({ tenant: 'default', userId: 'pat', serverId: 'docs' })).toBeUndefined()

    expectPending(await status('pat'), code)
    const listed = await post(relay, '/tools/list-tools', { user_id: 'pat', server_id: 'docs' })
    expect(listed.tools).toEqual([])
    expectPending(listed.auth_required[0], code)
    const called = await whoami('pat')
    expect(called).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth', server_id: 'docs', pending_confirmation: true })
    expect(called).not.toHaveProperty('login_url')
    expect(called.message).not.toContain(code)

    const wrong = await confirm('pat', wrongCode(code))
    expectPending(wrong, code)
    expect(wrong.message).toContain('That confirmation code is not right (4 tries left)')

    // Read aloud and typed by hand: lower case, a space for the dash, O for 0 and l for 1 all match.
    const typed = code.toLowerCase().replace('-', ' ').replace(/0/g, 'O').replace(/1/g, 'l')
    const confirmed = await confirm('pat', typed)
    expect(confirmed).toMatchObject({ status: 'authorized', message: 'Signed in: the confirmation code was right.' })
    expect(await whoami('pat')).toMatchObject({ ok: true, result: { structuredContent: { sub: 'pat' } } })
    // One time only: nothing waits any more, and the code changes nothing.
    expect(await confirm('pat', code)).toMatchObject({ status: 'authorized', message: 'Signed in.' })
  })

  it('five wrong codes, even sent at once, discard the sign-in; the right code then does nothing', async () => {
    const code = await signInPending('quentin')
    const guesses = await Promise.all([0, 1, 2, 3, 4].map((salt) => confirm('quentin', wrongCode(code, salt))))
    expect(guesses.filter((entry) => /Too many wrong confirmation codes/.test(entry.message))).toHaveLength(1)
    const late = await confirm('quentin', code)
    expect(late).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
    expect(late).not.toHaveProperty('pending_confirmation')
    expect(await whoami('quentin')).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', login_url: expect.any(String) })
    expect(await relay.deps.tokens.get({ tenant: 'default', userId: 'quentin', serverId: 'docs' })).toBeUndefined()
  })

  it('force_reauth while a sign-in waits discards it and gives a new link', async () => {
    const code = await signInPending('rosa')
    const forced = await status('rosa', { force_reauth: true })
    expect(forced).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
    expect(forced).not.toHaveProperty('pending_confirmation')
    expect(await confirm('rosa', code)).toMatchObject({ status: 'need_auth', login_url: forced.login_url })
    // The new link works, with a code of its own.
    const second = await signInPending('rosa')
    expect(second).not.toBe(code)
    expect(await confirm('rosa', second)).toMatchObject({ status: 'authorized' })
  })

  it('a reset discards a sign-in waiting for its code', async () => {
    const code = await signInPending('tove')
    const reset = await post(relay, '/oauth/reset', { user_id: 'tove' })
    expect(reset.deleted_server_ids).toEqual([])
    const after = await confirm('tove', code)
    expect(after).toMatchObject({ status: 'need_auth', login_url: expect.stringContaining('/oauth/start/') })
    expect(after).not.toHaveProperty('pending_confirmation')
    expect(await relay.deps.tokens.get({ tenant: 'default', userId: 'tove', serverId: 'docs' })).toBeUndefined()
  })

  it('a code confirms exactly its tenant, user and server', async () => {
    const code = await signInPending('sven')
    // Another user, the same user id under another tenant, and another server: nothing waits there.
    expect(await confirm('sven-twin', code)).toMatchObject({ status: 'need_auth', login_url: expect.any(String) })
    expect(await confirm('sven', code, { apiKey: OTHER_TENANT_KEY })).toMatchObject({ status: 'need_auth', login_url: expect.any(String) })
    expect(await confirm('sven', code, { serverId: 'wiki' })).toMatchObject({ status: 'need_auth', login_url: expect.any(String) })
    expect((await whoami('sven-twin')).error_code).toBe('NOT_AUTHORIZED')
    expect((await whoami('sven', { apiKey: OTHER_TENANT_KEY })).error_code).toBe('NOT_AUTHORIZED')
    // None of that counted against sven's sign-in, which still takes its code.
    expect(await confirm('sven', code)).toMatchObject({ status: 'authorized' })
    expect((await whoami('sven')).result.structuredContent.sub).toBe('sven')
  })

  it("the attack: A's link completed in B's browser links nothing for A, unless A is given B's code", async () => {
    // Mallory asks for a link for her own chat user and gets Victor to open it; his identity
    // provider signs him in at once (a remembered consent).
    const code = await signInPending('mallory', 'victor')
    for (let salt = 0; salt < 5; salt++) await confirm('mallory', wrongCode(code, salt))
    const answer = await whoami('mallory')
    expect(answer).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED' })
    expect(await relay.deps.tokens.get({ tenant: 'default', userId: 'mallory', serverId: 'docs' })).toBeUndefined()
    // The one way left: Victor hands over the code his page showed him.
    const again = await signInPending('mallory', 'victor')
    expect(await confirm('mallory', again)).toMatchObject({ status: 'authorized' })
    expect((await whoami('mallory')).result.structuredContent.sub).toBe('victor')
  })
})

describe('a pending sign-in across replicas', () => {
  let store: IsolatedStore
  let replicas: TestRelay[] = []

  afterAll(async () => {
    await Promise.all(replicas.map((replica) => replica.close()))
    await store?.release()
  })

  it('is completed on one replica and confirmed on another', async () => {
    store = await claimRedisDatabase()
    const shared = {
      servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host, SIGN_IN_CONFIRMATION: 'code', STORE_URL: store.url, RELAY_ENCRYPTION_KEY: randomBytes(32).toString('base64') },
      storeKeyPrefix: `t${randomBytes(6).toString('hex')}`,
    }
    replicas = await Promise.all([startRelay(shared), startRelay(shared)])
    const [a, b] = replicas as [TestRelay, TestRelay]
    const code = await signInPending('uma', 'uma', { target: a })
    expectPending(await status('uma', {}, { target: b }), code)
    expect(await confirm('uma', wrongCode(code), { target: b })).toMatchObject({ message: expect.stringContaining('(4 tries left)') })
    expect(await confirm('uma', wrongCode(code, 1), { target: a })).toMatchObject({ message: expect.stringContaining('(3 tries left)') })
    expect(await confirm('uma', code, { target: b })).toMatchObject({ status: 'authorized' })
    expect((await whoami('uma', { target: a })).result.structuredContent.sub).toBe('uma')
  })
})

describe('audit lines and secrets', () => {
  it('log sign_in.started, completed, confirmed and refused with tenant, user and server; never a code or its hash', () => {
    const records = logs.lines.map((line) => JSON.parse(line))
    const events = records.filter((record) => typeof record.event === 'string')
    for (const record of events) {
      expect(record, JSON.stringify(record)).toMatchObject({ tenant: expect.any(String), userId: expect.any(String), serverId: expect.any(String) })
    }
    const of = (event: string, userId: string) => events.filter((record) => record.event === event && record.userId === userId)
    expect(of('sign_in.started', 'pat')).toHaveLength(1)
    expect(of('sign_in.completed', 'pat')).toEqual([expect.objectContaining({ pendingConfirmation: true })])
    expect(of('sign_in.confirmed', 'pat')).toEqual([expect.objectContaining({ tenant: 'default', serverId: 'docs' })])
    expect(of('sign_in.refused', 'pat')).toEqual([expect.objectContaining({ reason: 'code', wrongTries: 1 })])
    expect(of('sign_in.refused', 'quentin').at(-1)).toMatchObject({ reason: 'code', wrongTries: 5, discarded: true })
    expect(of('sign_in.refused', 'rosa')).toEqual([expect.objectContaining({ reason: 'force_reauth' })])
    expect(of('sign_in.confirmed', 'mallory')).toHaveLength(1)

    expect(codes.length).toBeGreaterThanOrEqual(6)
    const texts = [...logs.lines, ...answers]
    for (const { userId, code } of codes) {
      const hash = hashConfirmationCode({ tenant: 'default', userId, serverId: 'docs' }, code)
      for (const secret of [code, code.replace('-', ''), hash]) {
        expect(texts.find((text) => text.includes(secret)), `${userId}'s code`).toBeUndefined()
      }
    }
  })
})
