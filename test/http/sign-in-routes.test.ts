import { describe, expect, it } from 'vitest'
import { RelayError } from '../../src/errors.ts'
import { escapeHtml, PAGE_HEADERS } from '../../src/http/pages/html-page.ts'
import type { CompleteSignInResult } from '../../src/relay/types.ts'
import { makeApp } from './helpers.ts'

const SECURITY_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
}

function expectPage(response: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number) {
  expect(response.statusCode).toBe(status)
  expect(response.headers).toMatchObject(SECURITY_HEADERS)
  expect(response.headers.location).toBeUndefined()
  expect(response.body).toMatch(/^<!doctype html>/)
  expect(response.body).not.toMatch(/<script/i)
}

describe('GET /oauth/start/:ticket', () => {
  it('redirects (302) to the URL the relay gives, without leaking a referrer', async () => {
    const { app, calls } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/oauth/start/good' })
    expect(response.statusCode).toBe(302)
    expect(response.headers.location).toBe('https://auth.example.com/authorize?client_id=relay&state=s1')
    expect(response.headers['referrer-policy']).toBe('no-referrer')
    expect(response.headers['cache-control']).toBe('no-store')
    expect(calls).toEqual([{ method: 'startSignIn', request: 'good' }])
    await app.close()
  })

  it('answers a 404 HTML page for an unknown or used ticket', async () => {
    const { app } = await makeApp()
    const response = await app.inject({ method: 'GET', url: '/oauth/start/used-ticket' })
    expectPage(response, 404)
    expect(response.body).toContain('This sign-in link has expired or was already used.')
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
        startSignIn: async (ticket) => {
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

describe('GET /oauth/callback', () => {
  it('passes $PUBLIC_BASE_URL (with its path prefix) + /oauth/callback + the raw query to the relay', async () => {
    const { app, calls } = await makeApp()
    const query = '?code=c%2B1&state=s-1&iss=https%3A%2F%2Fauth.example.com'
    const response = await app.inject({ method: 'GET', url: `/oauth/callback${query}` })
    expectPage(response, 200)
    expect(calls).toEqual([{ method: 'completeSignIn', request: `https://relay.example.com/base/oauth/callback${query}` }])
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
    expect((await app.inject({ method: 'GET', url: '/oauth/start/good', remoteAddress: '192.0.2.1' })).statusCode).toBe(302)
    expect((await app.inject({ method: 'GET', url: '/oauth/start/good', remoteAddress: '192.0.2.1' })).statusCode).toBe(429)
    expect((await app.inject({ method: 'GET', url: '/oauth/start/good', remoteAddress: '192.0.2.2' })).statusCode).toBe(302)
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
  })
  it('escapeHtml escapes the five characters', () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;')
  })
})
