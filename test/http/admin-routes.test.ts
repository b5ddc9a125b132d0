// The /admin routes' HTTP face (DESIGN.md §3-§4, issue 12 item 5): present only with
// RELAY_ADMIN_KEYS; admin keys and tool keys never stand in for each other, and a wrong key
// of either kind gets the very same 401; bad queries and bodies name the field; not in /openapi.json.
// The relay behind is the recording stand-in (helpers.ts): what reaches it is what the route parsed.
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/load-config.ts'
import { ACME_KEY, bearer, makeApp } from './helpers.ts'

const ADMIN_KEY = 'admin-key-0123456789abcdef'
const SECOND_ADMIN_KEY = 'second-admin-key-0123456789'
const WITH_ADMIN = { environment: { RELAY_ADMIN_KEYS: `${ADMIN_KEY}, ${SECOND_ADMIN_KEY}` } }

describe('admin routes', () => {
  it('do not exist without RELAY_ADMIN_KEYS: 404 whatever the key', async () => {
    const { app } = await makeApp()
    for (const headers of [{}, bearer(ACME_KEY), bearer(ADMIN_KEY)]) {
      expect((await app.inject({ method: 'GET', url: '/admin/connections', headers })).statusCode).toBe(404)
      expect((await app.inject({ method: 'POST', url: '/admin/reset', headers, payload: { tenant: 'acme', user_id: 'u1' } })).statusCode).toBe(404)
    }
    await app.close()
  })

  it('take admin keys only, and a tool key on an admin route reads exactly as a made-up key (and the other way round)', async () => {
    const { app, calls } = await makeApp(WITH_ADMIN)
    const list = (headers: Record<string, string>) => app.inject({ method: 'GET', url: '/admin/connections', headers })
    const tool = (headers: Record<string, string>) => app.inject({ method: 'POST', url: '/tools/auth-status', headers, payload: { user_id: 'u1' } })

    const madeUp = await list(bearer('made-up-key-0123456789abcdef'))
    const toolKey = await list(bearer(ACME_KEY))
    expect(madeUp.statusCode).toBe(401)
    expect(toolKey.statusCode).toBe(401)
    expect(toolKey.body).toBe(madeUp.body)
    expect((await list({})).statusCode).toBe(401)

    const madeUpOnTool = await tool(bearer('made-up-key-0123456789abcdef'))
    const adminOnTool = await tool(bearer(ADMIN_KEY))
    expect(adminOnTool.statusCode).toBe(401)
    expect(adminOnTool.body).toBe(madeUpOnTool.body)
    expect(adminOnTool.body).toBe(madeUp.body)
    expect(calls).toEqual([])

    // The header forms of the tool routes (Dify's credential prefixes): Basic <key> and the bare key.
    for (const authorization of [`Basic ${ADMIN_KEY}`, ADMIN_KEY]) {
      expect((await list({ authorization })).statusCode, authorization.slice(0, 6)).toBe(200)
      expect((await tool({ authorization })).body).toBe(madeUp.body)
    }
    for (const authorization of [`Basic ${ACME_KEY}`, ACME_KEY, `Basic ${Buffer.from(`admin:${ADMIN_KEY}`).toString('base64')}`]) {
      expect((await list({ authorization })).body).toBe(madeUp.body)
    }
    calls.length = 0

    expect((await list(bearer(SECOND_ADMIN_KEY))).json()).toEqual({ connections: [], next_cursor: null })
    expect(calls).toEqual([
      {
        method: 'listConnections',
        request: { admin: { adminKey: 2 }, tenant: undefined, userId: undefined, serverId: undefined, limit: 100, cursor: undefined },
      },
    ])
    await app.close()
  })

  it('parse the filters and the reset body, and answer 400 naming the field', async () => {
    const { app, calls } = await makeApp(WITH_ADMIN)
    const list = (query: string) => app.inject({ method: 'GET', url: `/admin/connections?${query}`, headers: bearer(ADMIN_KEY) })
    const reset = (payload: object) => app.inject({ method: 'POST', url: '/admin/reset', headers: bearer(ADMIN_KEY), payload })

    expect((await list('tenant=acme&user_id=u%3A1&server_id=docs&limit=3&cursor=abc')).statusCode).toBe(200)
    expect(calls.at(-1)!.request).toEqual({ admin: { adminKey: 1 }, tenant: 'acme', userId: 'u:1', serverId: 'docs', limit: 3, cursor: 'abc' })
    for (const [query, field] of [
      ['limit=501', 'limit'],
      ['limit=0', 'limit'],
      ['limit=ten', 'limit'],
      ['tenant=a%20b', 'tenant'],
      ['tenant=a&tenant=b', 'tenant'],
      ['user_id=', 'user_id'],
    ] as const) {
      const answer = await list(query)
      expect(answer.statusCode, query).toBe(400)
      expect(answer.json().error, query).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringMatching(new RegExp(`^${field}: `)) })
    }
    // A misspelt filter is refused rather than ignored (which would list everyone).
    const misspelt = await list('userid=u1')
    expect(misspelt.statusCode).toBe(400)
    expect(misspelt.json().error.message).toContain('userid')

    expect((await reset({ tenant: 'globex', user_id: 'u2', server_id: 'docs' })).json()).toMatchObject({ user_id: 'u2', servers: [] })
    expect(calls.at(-1)).toEqual({ method: 'adminReset', request: { admin: { adminKey: 1 }, tenant: 'globex', userId: 'u2', serverId: 'docs' } })
    for (const [payload, field] of [
      [{ user_id: 'u2' }, 'tenant'],
      [{ tenant: 'globex' }, 'user_id'],
      [{ tenant: 'globex', user_id: 7 }, 'user_id'],
    ] as const) {
      const answer = await reset(payload)
      expect(answer.statusCode).toBe(400)
      expect(answer.json().error.message).toMatch(new RegExp(`^${field}: `))
    }
    await app.close()
  })

  it('are not in /openapi.json', async () => {
    const { app } = await makeApp(WITH_ADMIN)
    const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
    expect(Object.keys(document.paths).filter((path) => path.startsWith('/admin'))).toEqual([])
    await app.close()
  })
})

describe('RELAY_ADMIN_KEYS', () => {
  const base = { RELAY_API_KEYS: `acme:${ACME_KEY}`, STORE_URL: 'memory://' }
  it.each([
    ['a key shorter than 16 characters', 'short-key', 'RELAY_ADMIN_KEYS: entry 1: the key must be at least 16 characters'],
    ['a key that is also a tool key', `${ADMIN_KEY},${ACME_KEY}`, 'RELAY_ADMIN_KEYS: entry 2: the key is also in RELAY_API_KEYS; admin keys must differ from tool keys'],
    ['the same key twice', `${ADMIN_KEY},${ADMIN_KEY}`, 'RELAY_ADMIN_KEYS: entry 2: the same key is listed twice'],
  ])('stops start-up on %s, naming the variable and never the key', (_name, value, message) => {
    let thrown: unknown
    try {
      loadConfig({ ...base, RELAY_ADMIN_KEYS: value })
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(ConfigError)
    expect((thrown as Error).message).toBe(message)
    expect((thrown as Error).message).not.toContain(ACME_KEY)
  })

  it('is off when unset', () => {
    expect(loadConfig(base).adminKeys).toEqual([])
  })
})
