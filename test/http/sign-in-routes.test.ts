import { describe, expect, it } from 'vitest'
import { RelayError } from '../../src/errors.ts'
import { createHash } from 'node:crypto'
import { BROWSER_COOKIE, createBrowserBinding, HOST_BROWSER_COOKIE } from '../../src/http/browser-binding.ts'
import { CONFIRMATION_PAGE_HEADERS, escapeHtml, PAGE_HEADERS } from '../../src/http/pages/html-page.ts'
import { findConfirmationToken } from '../peers/browser.ts'
import type { CompleteSignInResult } from '../../src/relay/types.ts'
import { makeApp, SIGN_IN_KEY } from './helpers.ts'

const SECURITY_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
}

function expectPage(response: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, headers: object = SECURITY_HEADERS) {
  expect(response.statusCode).toBe(status)
  expect(response.headers).toMatchObject(headers)
  expect(response.headers.location).toBeUndefined()
  expect(response.body).toMatch(/^<!doctype html>/)
  expect(response.body).not.toMatch(/<script/i)
}

const CONFIRMATION_HEADERS = {
  ...SECURITY_HEADERS,
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}

/** The browser cookie a response set: its value and attributes (named `__Host-…` on the default https relay). */
function browserCookie(response: { headers: Record<string, unknown> }, name = HOST_BROWSER_COOKIE): { value: string; attributes: string[] } {
  const line = String(response.headers['set-cookie'] ?? '')
  const [pair = '', ...attributes] = line.split(';').map((part) => part.trim())
  expect(pair.startsWith(`${name}=`)).toBe(true)
  return { value: pair.slice(name.length + 1), attributes }
}

function csrfOf(html: string): string {
  const token = findConfirmationToken(html)
  expect(token).toBeTruthy()
  return token!
}

const form = (fields: Record<string, string>) => ({
  'content-type': 'application/x-www-form-urlencoded',
  payload: new URLSearchParams(fields).toString(),
})

describe('GET /oauth/start/:ticket (the confirmation page)', () => {
  it('answers a page naming the server, workspace and user, with a CSRF form and a browser cookie; it uses nothing up', async () => {
    const { app, calls } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/oauth/start/good' })
    expectPage(response, 200, CONFIRMATION_HEADERS)
    expect(response.body).toContain('Connect Notion workspace?')
    expect(response.body).toContain('<dt>Workspace</dt><dd>acme</dd>')
    expect(response.body).toContain('<dt>Chat user</dt><dd>u-42</dd>')
    expect(response.body).toContain('Continue only if you asked for this yourself, in your own chat with the assistant.')
    // One form, posting back to the page's own URL (no action): the browser's URL is the public one.
    expect(response.body.match(/<form /g)).toHaveLength(1)
    expect(response.body).toMatch(/<form method="post">/)
    const cookie = browserCookie(response)
    expect(cookie.value).toMatch(/^[A-Za-z0-9_-]{43}$/)
    // PUBLIC_BASE_URL is https://relay.example.com/base: `__Host-`, so Secure and Path=/ whatever
    // the prefix (a sibling subdomain cannot set such a cookie).
    expect(cookie.attributes).toEqual(['Path=/', 'Max-Age=86400', 'HttpOnly', 'SameSite=Lax', 'Secure'])
    expect(csrfOf(response.body)).not.toBe(cookie.value)
    expect(calls).toEqual([{ method: 'describeSignIn', request: 'good' }])
    await app.close()
  })

  it('keeps the browser cookie it already has (one per browser), and the same CSRF token for the same link', async () => {
    const { app } = await makeApp()
    const first = await app.inject({ method: 'GET', url: '/oauth/start/good' })
    const cookie = browserCookie(first).value
    const again = await app.inject({ method: 'GET', url: '/oauth/start/good', headers: { cookie: `other=1; ${HOST_BROWSER_COOKIE}=${cookie}` } })
    expectPage(again, 200, CONFIRMATION_HEADERS)
    expect(again.headers['set-cookie']).toBeUndefined()
    expect(csrfOf(again.body)).toBe(csrfOf(first.body))
    await app.close()
  })

  it('answers HEAD without a body and without using anything up', async () => {
    const { app, calls } = await makeApp()
    const response = await app.inject({ method: 'HEAD', url: '/oauth/start/good' })
    expect(response.statusCode).toBe(200)
    expect(response.body).toBe('')
    expect(calls.map((call) => call.method)).toEqual(['describeSignIn'])
    await app.close()
  })

  it('on a plain-http relay: no Secure, no prefix (browsers refuse both without https), the path of the relay\'s /oauth', async () => {
    const { app } = await makeApp({ environment: { PUBLIC_BASE_URL: 'http://localhost:8787/base' } })
    const response = await app.inject({ method: 'GET', url: '/oauth/start/good' })
    expect(browserCookie(response, BROWSER_COOKIE).attributes).toEqual(['Path=/base/oauth', 'Max-Age=86400', 'HttpOnly', 'SameSite=Lax'])
    await app.close()
  })

  it('answers a 404 HTML page for an unknown or used ticket', async () => {
    const { app } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/oauth/start/used-ticket' })
    expectPage(response, 404)
    expect(response.body).toContain('This sign-in link has expired or was already used.')
    expect(response.headers['set-cookie']).toBeUndefined()
    await app.close()
  })

  it('answers an HTML page (not JSON) for an over-long ticket', async () => {
    const { app, calls } = await makeApp()
    const response = await app.inject({ method: 'GET', url: `/oauth/start/${'x'.repeat(300)}` })
    expectPage(response, 404)
    expect(calls).toEqual([])
    await app.close()
  })

  it('answers a 503 page when the store is down, and a generic 500 page for a bug', async () => {
    const { app } = await makeApp({
      relay: {
        describeSignIn: async (ticket) => {
          if (ticket === 'down') throw new RelayError('STORE_UNAVAILABLE', 'the ticket store does not answer')
          throw new Error('ticket=abc secret internals')
        },
      },
    })
    const down = await app.inject({ method: 'GET', url: '/oauth/start/down' })
    expectPage(down, 503)
    expect(down.body).toContain('the ticket store does not answer')
    const bug = await app.inject({ method: 'GET', url: '/oauth/start/bug' })
    expectPage(bug, 500)
    expect(bug.body).not.toContain('secret internals')
    await app.close()
  })
})

describe('POST /oauth/start/:ticket (Continue)', () => {
  async function pageFor(app: Awaited<ReturnType<typeof makeApp>>['app'], ticket = 'good') {
    const page = await app.inject({ method: 'GET', url: `/oauth/start/${ticket}` })
    return { cookie: browserCookie(page).value, csrf: csrfOf(page.body) }
  }

  it('with the page cookie and token: 302 to the authorization server, the flow bound to the cookie, no referrer', async () => {
    const { app, calls } = await makeApp()
    const { cookie, csrf } = await pageFor(app)
    // With Referrer-Policy no-referrer, browsers send Origin: null on this same-origin POST.
    const response = await app.inject({ method: 'POST', url: '/oauth/start/good', headers: { cookie: `${HOST_BROWSER_COOKIE}=${cookie}`, origin: 'null', 'sec-fetch-site': 'same-origin', ...form({ csrf }) }, payload: form({ csrf }).payload })
    expect(response.statusCode).toBe(302)
    expect(response.headers.location).toBe('https://auth.example.com/authorize?client_id=relay&state=s1')
    expect(response.headers['referrer-policy']).toBe('no-referrer')
    expect(response.headers['cache-control']).toBe('no-store')
    expect(browserCookie(response)).toEqual({ value: cookie, attributes: ['Path=/', 'Max-Age=86400', 'HttpOnly', 'SameSite=Lax', 'Secure'] })
    expect(calls.at(-1)).toEqual({
      method: 'startSignIn',
      request: { ticketId: 'good', browser: { csrfValid: true, browserHash: createHash('sha256').update(cookie).digest('base64url') } },
    })
    await app.close()
  })

  it('refuses (403 page) a missing or wrong token, a missing cookie, another link\'s token, another browser\'s cookie', async () => {
    const { app, calls } = await makeApp()
    const mine = await pageFor(app)
    const other = await pageFor(app)
    const cases: Array<[string, Record<string, string>, string | undefined]> = [
      ['no token', {}, mine.cookie],
      ['empty token', { csrf: '' }, mine.cookie],
      ['wrong token', { csrf: 'A'.repeat(43) }, mine.cookie],
      ['no cookie', { csrf: mine.csrf }, undefined],
      ["another browser's cookie", { csrf: mine.csrf }, other.cookie],
    ]
    // The token is bound to the link: a page of another ticket gives a token that does not fit this one.
    const otherTicketPage = await app.inject({ method: 'GET', url: '/oauth/start/other', headers: { cookie: `${HOST_BROWSER_COOKIE}=${mine.cookie}` } })
    expect(otherTicketPage.statusCode).toBe(404)
    for (const [label, fields, cookie] of cases) {
      calls.length = 0
      const response = await app.inject({
        method: 'POST',
        url: '/oauth/start/good',
        headers: { ...(cookie ? { cookie: `${HOST_BROWSER_COOKIE}=${cookie}` } : {}), 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams(fields).toString(),
      })
      expectPage(response, 403)
      expect(response.body, label).toContain('This sign-in was not confirmed')
      expect(response.headers['set-cookie'], label).toBeUndefined()
      expect(calls, label).toEqual([{ method: 'startSignIn', request: { ticketId: 'good', browser: { csrfValid: false } } }])
    }
    // A body that is not a form at all, or none.
    for (const payload of [undefined, JSON.stringify({ csrf: mine.csrf })]) {
      const response = await app.inject({
        method: 'POST',
        url: '/oauth/start/good',
        headers: { cookie: `${HOST_BROWSER_COOKIE}=${mine.cookie}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
        ...(payload ? { payload } : {}),
      })
      // JSON parses, and the token in it is as good as the form's; no body is a missing token.
      expect(response.statusCode).toBe(payload ? 302 : 403)
    }
    await app.close()
  })

  it('answers the 404 page for an unknown or used ticket', async () => {
    const { app } = await makeApp()
    const page = await app.inject({ method: 'GET', url: '/oauth/start/good' })
    const cookie = browserCookie(page).value
    const response = await app.inject({
      method: 'POST',
      url: '/oauth/start/used',
      headers: { cookie: `${HOST_BROWSER_COOKIE}=${cookie}`, 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ csrf: createBrowserBinding('https://relay.example.com/base', [SIGN_IN_KEY]).csrfToken(cookie, 'used') }).toString(),
    })
    expectPage(response, 404)
    await app.close()
  })
})

describe('GET /oauth/callback', () => {
  it('passes $PUBLIC_BASE_URL (with its path prefix) + /oauth/callback + the raw query to the relay', async () => {
    const { app, calls } = await makeApp()
    const query = '?code=c%2B1&state=s-1&iss=https%3A%2F%2Fauth.example.com'
    const response = await app.inject({ method: 'GET', url: `/oauth/callback${query}` })
    expectPage(response, 200)
    expect(calls).toEqual([{ method: 'completeSignIn', request: { url: `https://relay.example.com/base/oauth/callback${query}`, browserHash: undefined } }])
    await app.close()
  })

  it("passes the SHA-256 of the browser cookie, never the cookie", async () => {
    const { app, calls } = await makeApp()
    const cookie = 'c'.repeat(43)
    await app.inject({ method: 'GET', url: '/oauth/callback?code=c&state=s', headers: { cookie: `${HOST_BROWSER_COOKIE}=${cookie}` } })
    expect(calls).toEqual([
      { method: 'completeSignIn', request: { url: 'https://relay.example.com/base/oauth/callback?code=c&state=s', browserHash: createHash('sha256').update(cookie).digest('base64url') } },
    ])
    await app.close()
  })

  it('in code mode shows the confirmation code in #confirmation-code and says to give it to the assistant', async () => {
    const { app } = await makeApp({ relay: { completeSignIn: async () => ({ kind: 'connected', serverId: 'notion', description: 'Notion workspace', confirmationCode: 'ABCDE-FGH12' }) } })
    const response = await app.inject({ method: 'GET', url: '/oauth/callback?code=c&state=s' })
    expectPage(response, 200)
    expect(response.body).toContain('<p class="code" id="confirmation-code">ABCDE-FGH12</p>')
    expect(response.body).toContain('give the assistant this confirmation code in your chat')
    await app.close()
  })

  it('says which server is connected, by description or else server_id', async () => {
    for (const [result, text] of [
      [{ kind: 'connected', serverId: 'notion', description: 'Notion workspace' }, 'Notion workspace is now connected.'],
      [{ kind: 'connected', serverId: 'docs', description: '' }, 'docs is now connected.'],
    ] as const) {
      const { app } = await makeApp({ relay: { completeSignIn: async () => result } })
      const response = await app.inject({ method: 'GET', url: '/oauth/callback?code=c&state=s' })
      expectPage(response, 200)
      expect(response.body).toContain(text)
      expect(response.body).toContain('You can close this window and go back to the chat.')
      await app.close()
    }
  })

  it('shows a failure with the relay status (400 or 502)', async () => {
    for (const status of [400, 502] as const) {
      const { app } = await makeApp({ relay: { completeSignIn: async () => ({ kind: 'failed', status, message: 'The sign-in was cancelled.' }) } })
      const response = await app.inject({ method: 'GET', url: '/oauth/callback?error=access_denied&state=s' })
      expectPage(response, status)
      expect(response.body).toContain('The sign-in was cancelled.')
      await app.close()
    }
  })

  it('escapes everything it shows and never echoes the code or state', async () => {
    const evil = '<script>alert("x")</script><img src=x onerror=alert(1)>&\''
    for (const result of [
      { kind: 'connected', serverId: 'x', description: evil },
      { kind: 'failed', status: 400, message: evil },
    ] as CompleteSignInResult[]) {
      const { app } = await makeApp({ relay: { completeSignIn: async () => result } })
      const response = await app.inject({ method: 'GET', url: '/oauth/callback?code=SECRET-CODE-123&state=SECRET-STATE-456' })
      expect(response.headers).toMatchObject(SECURITY_HEADERS)
      expect(response.body).not.toContain('<script>')
      expect(response.body).not.toContain('<img')
      expect(response.body).toContain(escapeHtml(evil))
      expect(response.body).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;')
      expect(response.body).not.toContain('SECRET-CODE-123')
      expect(response.body).not.toContain('SECRET-STATE-456')
      await app.close()
    }
  })

  it('never redirects, even when the relay fails', async () => {
    const { app } = await makeApp({ relay: { completeSignIn: async () => Promise.reject(new Error('exchange blew up: code=abc')) } })
    const response = await app.inject({ method: 'GET', url: '/oauth/callback?code=abc&state=s' })
    expectPage(response, 500)
    expect(response.body).not.toContain('abc')
    await app.close()
  })
})

describe('rate limit on the browser routes', () => {
  it('answers a 429 HTML page past the limit, per route, with Retry-After', async () => {
    const { app } = await makeApp({ deps: { rateLimit: { max: 2, timeWindowMs: 60_000 } } })
    for (const url of ['/oauth/start/good', '/oauth/callback?code=c&state=s']) {
      const statuses = []
      for (let i = 0; i < 3; i += 1) statuses.push((await app.inject({ method: 'GET', url })).statusCode)
      expect(statuses.slice(0, 2)).not.toContain(429)
      const limited = await app.inject({ method: 'GET', url })
      expectPage(limited, 429)
      expect(limited.headers['retry-after']).toBeDefined()
      expect(limited.body).toContain('Too many attempts')
    }
    // The API-key routes and documents are not limited by it.
    expect((await app.inject({ method: 'GET', url: '/oauth/client-metadata.json' })).statusCode).toBe(200)
    await app.close()
  })

  it('counts each client address on its own', async () => {
    const { app } = await makeApp({ deps: { rateLimit: { max: 1, timeWindowMs: 60_000 } } })
    expect((await app.inject({ method: 'GET', url: '/oauth/start/good', remoteAddress: '192.0.2.1' })).statusCode).toBe(200)
    expect((await app.inject({ method: 'GET', url: '/oauth/start/good', remoteAddress: '192.0.2.1' })).statusCode).toBe(429)
    expect((await app.inject({ method: 'GET', url: '/oauth/start/good', remoteAddress: '192.0.2.2' })).statusCode).toBe(200)
    await app.close()
  })
})

describe('GET /oauth/client-metadata.json', () => {
  it('serves the relay document as JSON', async () => {
    const { app } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/oauth/client-metadata.json' })
    expect(response.statusCode).toBe(200)
    expect(response.headers['content-type']).toMatch(/^application\/json/)
    expect(response.json()).toEqual({ client_id: 'https://relay.example.com/base/oauth/client-metadata.json', client_name: 'MCP Auth Relay' })
    await app.close()
  })
})

describe('page headers', () => {
  it('are exactly the documented set', () => {
    expect(PAGE_HEADERS).toEqual(SECURITY_HEADERS)
    // The confirmation page leaves out form-action: Chromium applies it to the 302 after the POST (FIELD-NOTES.md).
    expect(CONFIRMATION_PAGE_HEADERS).toEqual(CONFIRMATION_HEADERS)
  })
  it('escapeHtml escapes the five characters', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;')
  })
})
