// Secrets never reach a log line or an answer (DESIGN.md §6, STYLE.md §5): the relay at log
// level trace goes through full sign-ins (a dynamically registered client with a secret, and a
// pre-registered confidential one), calls, refreshes (one good, one failing for now, one refused
// for good), failed callbacks and a reset. Every secret the authorization server issued or was
// shown, every token in the relay's store, the client secrets, the API keys, login tickets, the
// browser-binding cookies and the confirmation pages' CSRF tokens are then looked for in every log
// line and every answer body. (The confirmation code of SIGN_IN_CONFIRMATION=code is checked in
// test/relay/sign-in-confirmation.test.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { BROWSER_COOKIE, createBrowserBinding } from '../../src/http/browser-binding.ts'
import { cookieValue, createCookieJar, followToCallback, signInThroughBrowser, type CookieJar } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { freePort } from '../support/free-port.ts'
import { OTHER_TENANT_KEY, startRelay, TEST_API_KEY, type TestRelay } from '../support/relay.ts'
import { answeredByStatus, captureLogLines, createTally, send } from './harness.ts'

const CONFIDENTIAL_SECRET = 'conf-secret-5b8e1f0c9a7d4e2b6c3f'
const WRONG_KEY = 'wrong-key-d41d8cd98f00b204e980'

let as: AuthorizationServer
let docs: McpUpstream
let conf: McpUpstream
let relay: TestRelay
const logs = captureLogLines()
/** Tool-route answer bodies, and the pages and headers of the browser routes. */
const answers: string[] = []
const pages: string[] = []
/** Response headers of the browser routes: they carry the browser cookie (Set-Cookie), nothing else secret. */
const pageHeaders: string[] = []
const tickets: string[] = []
/** Each browser that pressed Continue, with the ticket it pressed it for. */
const browsers: Array<{ jar: CookieJar; ticket: string }> = []
let clockOffsetMs = 0
const tally = createTally('secrets')

beforeAll(async () => {
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  as = await startAuthorizationServer({
    clients: [
      {
        client_id: 'relay-confidential',
        client_secret: CONFIDENTIAL_SECRET,
        redirect_uris: [`${base}/oauth/callback`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
  })
  docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  conf = await startMcpUpstream({ auth: { issuer: as.issuer } })
  relay = await startRelay({
    servers: [
      { server_id: 'docs', description: 'Docs (dynamic registration)', mcp_url: docs.url },
      { server_id: 'conf', description: 'Confidential client', mcp_url: conf.url, client_id: 'relay-confidential', client_secret: CONFIDENTIAL_SECRET },
    ],
    env: { PORT: String(port), PUBLIC_BASE_URL: base, OAUTH_TRUSTED_HOSTS: new URL(as.url).host, LOG_LEVEL: 'trace' },
    logStream: logs.stream,
    // The relay's clock, moved forward to make its tokens due for refresh.
    now: () => Date.now() + clockOffsetMs,
  })
})

afterAll(async () => {
  tally.print({ logLines: logs.lines.length, secretsChecked, relayAnswers: await answeredByStatus([relay]) })
  await relay?.close()
  await Promise.all([docs?.close(), conf?.close(), as?.close()])
})

let secretsChecked = 0

/** A tool-route request whose answer body is kept for the scan. */
async function post(path: string, body: object, apiKey = TEST_API_KEY) {
  const answer = await relay.post(path, body, { apiKey })
  tally.add(answer.status)
  answers.push(JSON.stringify(answer.body))
  return answer
}

async function open(url: string, jar?: CookieJar) {
  const target = new URL(url)
  const cookie = jar?.header(target)
  const answer = await send(relay, { method: 'GET', path: `${target.pathname}${target.search}`, headers: cookie ? { cookie } : {} })
  tally.add(answer.status)
  pages.push(answer.text)
  pageHeaders.push(JSON.stringify([...answer.headers]))
  return answer
}

/** A browser for `loginUrl`, remembered for the scan. */
function browserFor(loginUrl: string): CookieJar {
  const jar = createCookieJar()
  browsers.push({ jar, ticket: loginUrl.slice(loginUrl.lastIndexOf('/') + 1) })
  return jar
}

async function loginUrl(userId: string, serverId: string): Promise<string> {
  const status = await post('/tools/auth-status', { user_id: userId, server_id: serverId, force_reauth: true })
  const url = status.body.servers[0].login_url as string
  tickets.push(url.slice(url.lastIndexOf('/') + 1))
  return url
}

async function signIn(userId: string, serverId: string) {
  const url = await loginUrl(userId, serverId)
  const page = await signInThroughBrowser(url, userId, { jar: browserFor(url) })
  tally.add(page.status)
  pages.push(page.html)
  pageHeaders.push(JSON.stringify([...page.headers]))
  expect(page.status).toBe(200)
}

async function whoami(userId: string, serverId: string) {
  return (await post('/tools/call-tool', { user_id: userId, tool_ref: `${serverId}::whoami`, input: {} })).body
}

describe('with LOG_LEVEL=trace through sign-in, calls, refreshes, failures and reset', () => {
  it('runs the whole life of two users', async () => {
    for (const serverId of ['docs', 'conf']) {
      await signIn('alice', serverId)
      await signIn('bob', serverId)
      expect((await whoami('alice', serverId)).result.structuredContent.sub).toBe('alice')
    }
    await post('/tools/list-tools', { user_id: 'alice' })
    await post('/tools/call-tool', { user_id: 'bob', tool_ref: 'docs::echo', input: { text: 'hello' } })

    // Due for refresh (60 s tokens): one good refresh per user and server.
    const refreshesBefore = as.refreshCount()
    clockOffsetMs = 2 * 60_000
    for (const serverId of ['docs', 'conf']) {
      expect((await whoami('alice', serverId)).ok).toBe(true)
      expect((await whoami('bob', serverId)).ok).toBe(true)
    }
    expect(as.refreshCount()).toBe(refreshesBefore + 4)

    // A refresh that fails for now (503): the token is kept, the answer says so.
    clockOffsetMs = 4 * 60_000
    as.failTokenEndpoint(503)
    const transient = await whoami('alice', 'conf')
    expect(transient).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    // A refresh refused for good (400): the token is removed, a new sign-in is asked for.
    as.failTokenEndpoint(400)
    const refused = await whoami('bob', 'docs')
    expect(refused).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED' })
    tickets.push(refused.login_url.slice(refused.login_url.lastIndexOf('/') + 1))
    as.failTokenEndpoint(undefined)
    expect((await whoami('alice', 'conf')).ok).toBe(true)

    // Failed callbacks: the user refused, a code that is not the one issued, a forged state.
    const carolDocs = await loginUrl('carol', 'docs')
    const carolsBrowser = browserFor(carolDocs)
    const refusedCallback = new URL(await followToCallback(carolDocs, 'carol', { jar: carolsBrowser }))
    refusedCallback.searchParams.delete('code')
    refusedCallback.searchParams.set('error', 'access_denied')
    expect((await open(refusedCallback.href, carolsBrowser)).status).toBe(400)
    const carolConf = await loginUrl('carol', 'conf')
    const badCode = new URL(await followToCallback(carolConf, 'carol', { jar: browserFor(carolConf) }))
    // Delivered by another browser first (refused: the cookie), then by carol's with a wrong code.
    expect((await open(badCode.href)).status).toBe(400)
    badCode.searchParams.set('code', `${badCode.searchParams.get('code')}x`)
    expect((await open(badCode.href, browsers.at(-1)!.jar)).status).toBe(400)
    const forged = new URL(badCode)
    forged.searchParams.set('state', 'forged')
    expect((await open(forged.href, carolsBrowser)).status).toBe(400)
    // An unused login link (its confirmation page), a used one, the wrong API key.
    const daveDocs = await loginUrl('dave', 'docs')
    const davesBrowser = browserFor(daveDocs)
    const confirmation = await open(daveDocs, davesBrowser)
    expect(confirmation.status).toBe(200)
    davesBrowser.store(new URL(daveDocs), confirmation.headers)
    expect((await post('/tools/auth-status', { user_id: 'alice' }, WRONG_KEY)).status).toBe(401)
    expect((await post('/tools/auth-status', { user_id: 'alice' }, OTHER_TENANT_KEY)).status).toBe(200)

    await signIn('bob', 'docs')
    expect((await post('/oauth/reset', { user_id: 'alice' })).body.deleted_server_ids).toEqual(['docs', 'conf'])
    await post('/oauth/reset', { user_id: 'bob', server_id: 'docs' })
  }, 60_000)

  it('no secret appears in any log line or any answer', async () => {
    const stored = await Promise.all(
      ['docs', 'conf'].flatMap((serverId) => ['alice', 'bob'].map((userId) => relay.deps.tokens.get({ tenant: 'default', userId, serverId }))),
    )
    const secrets = new Map<string, string>()
    const add = (kind: string, value: string | undefined) => {
      if (value && value.length >= 8) secrets.set(value, kind)
    }
    for (const { kind, value } of as.issuedSecrets) add(kind, value)
    for (const token of stored) {
      add('stored access_token', token?.accessToken)
      add('stored refresh_token', token?.refreshToken)
    }
    add('configured client_secret', CONFIDENTIAL_SECRET)
    for (const key of [TEST_API_KEY, OTHER_TENANT_KEY, WRONG_KEY]) add('API key', key)
    for (const ticket of tickets) add('login ticket', ticket)
    const binding = createBrowserBinding(relay.url, relay.signInKeys)
    for (const { jar, ticket } of browsers) {
      const cookie = cookieValue(jar, `${relay.url}/oauth/callback`, BROWSER_COOKIE)
      expect(cookie, 'every browser got its cookie').toMatch(/^[A-Za-z0-9_-]{43}$/)
      add('browser cookie', cookie)
      add('CSRF token', binding.csrfToken(cookie!, ticket))
    }

    const kinds = new Set(secrets.values())
    // The run produced every kind of secret the brief names (else the scan proves little).
    for (const kind of ['code', 'state', 'code_verifier', 'access_token', 'refresh_token', 'client_secret', 'configured client_secret', 'API key', 'login ticket', 'browser cookie', 'CSRF token']) {
      expect(kinds, kind).toContain(kind)
    }
    expect(as.issuedSecrets.filter((secret) => secret.kind === 'client_secret').length).toBeGreaterThanOrEqual(2)
    const messages = logs.lines.map((line) => JSON.parse(line).msg as string)
    for (const expected of ['sign-in started', 'sign-in completed', 'sign-in refused', 'token refreshed', 'refresh failed, token kept', 'refresh rejected, token removed', 'tokens reset', 'request rejected']) {
      expect(messages, expected).toContain(expected)
    }
    expect(logs.lines.length).toBeGreaterThan(60)

    const leaks: string[] = []
    for (const [value, kind] of secrets) {
      secretsChecked++
      const base64 = Buffer.from(value).toString('base64')
      // A login ticket belongs in the tool answers (it is the login_url), a CSRF token in its own
      // confirmation page, a browser cookie in Set-Cookie; anywhere else they leak.
      const places =
        kind === 'login ticket'
          ? ([['log', logs.lines], ['page', pages], ['page header', pageHeaders]] as const)
          : kind === 'CSRF token'
            ? ([['log', logs.lines], ['answer', answers], ['page header', pageHeaders]] as const)
            : kind === 'browser cookie'
              ? ([['log', logs.lines], ['answer', answers], ['page', pages]] as const)
              : ([['log', logs.lines], ['answer', answers], ['page', pages], ['page header', pageHeaders]] as const)
      for (const [where, texts] of places) {
        const found = texts.find((text) => text.includes(value) || text.includes(encodeURIComponent(value)) || (value.length > 12 && text.includes(base64)))
        if (found) leaks.push(`${kind} in a ${where}: ${found.slice(0, 300)}`)
      }
    }
    expect(leaks).toEqual([])
    // Nothing shaped like a JWT or a Basic credential either.
    expect(logs.lines.filter((line) => /eyJ[\w-]{10,}\.eyJ[\w-]{10,}|Basic [A-Za-z0-9+/=]{16,}/.test(line))).toEqual([])
  })
})
