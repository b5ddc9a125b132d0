// GET /files/:id at the HTTP layer (the relay stands in: the recording relay of helpers.ts knows
// one file, id "kept"). Headers against real kept files: test/relay/server-answers.test.ts.
import { describe, expect, it } from 'vitest'
import { makeApp } from './helpers.ts'

describe('GET /files/:id', () => {
  it('serves a kept file without an API key, and 404 in the JSON error shape for any other id', async () => {
    const { app, calls } = await makeApp()
    const kept = await app.inject({ method: 'GET', url: '/files/kept' })
    expect(kept.statusCode).toBe(200)
    expect(kept.rawPayload.toString()).toBe('png bytes')
    expect(kept.headers['content-type']).toBe('image/png')
    const missing = await app.inject({ method: 'GET', url: '/files/gone' })
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toEqual({ error: { code: 'NOT_FOUND', message: expect.stringContaining('expired') } })
    expect(calls.map((call) => call.request)).toEqual(['kept', 'gone'])
    await app.close()
  })

  it('is rate-limited per client address', async () => {
    const { app } = await makeApp({ deps: { filesRateLimit: { max: 2, timeWindowMs: 60_000 } } })
    const statuses = []
    for (let i = 0; i < 3; i++) statuses.push((await app.inject({ method: 'GET', url: '/files/kept' })).statusCode)
    expect(statuses).toEqual([200, 200, 429])
    await app.close()
  })
})
