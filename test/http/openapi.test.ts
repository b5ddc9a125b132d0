import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { ACME_KEY, bearer, makeApp } from './helpers.ts'

/**
 * The rules Dify's Custom Tool importer (api/core/tools/utils/parser.py) lives by: one tool per
 * operation named by operationId, described by `description`, parameters from the top-level body
 * properties typed string/number/boolean, a body $ref resolved one level only, URL from servers[0].
 */
let app: FastifyInstance
let document: any

beforeAll(async () => {
  ;({ app } = await makeApp())
  const response = await app.inject({ method: 'GET', url: '/openapi.json' })
  expect(response.statusCode).toBe(200)
  expect(response.headers['content-type']).toMatch(/^application\/json/)
  document = response.json()
})
afterAll(async () => {
  await app.close()
})

const EXPECTED = {
  '/tools/auth-status': { operationId: 'mcp_auth_status', properties: { user_id: 'string', server_id: 'string', server_ids: 'string', force_reauth: 'boolean', confirm_code: 'string' } },
  '/tools/list-tools': { operationId: 'mcp_tool_list', properties: { user_id: 'string', server_id: 'string', server_ids: 'string' } },
  '/tools/call-tool': { operationId: 'mcp_tool_call', properties: { user_id: 'string', tool_ref: 'string', input: 'string', input_ref: 'string', input_response: 'string' } },
} as const

describe('/openapi.json for Dify', () => {
  it('is OpenAPI 3 with info, and servers[0].url is PUBLIC_BASE_URL', () => {
    expect(document.openapi).toMatch(/^3\./)
    expect(document.info.title).toBeTruthy()
    expect(document.info.version).toBe('1.0.0')
    expect(document.servers[0].url).toBe('https://relay.example.com/base')
  })

  it('servers[0].url is TOOLS_BASE_URL when set (where Dify reaches the relay), while sign-in links stay on PUBLIC_BASE_URL', async () => {
    const { app: relayApp } = await makeApp({ environment: { TOOLS_BASE_URL: 'http://mcp-auth-relay:8787/' } })
    const served = (await relayApp.inject({ method: 'GET', url: '/openapi.json' })).json()
    expect(served.servers).toEqual([{ url: 'http://mcp-auth-relay:8787' }])
    const status = await relayApp.inject({ method: 'POST', url: '/tools/auth-status', headers: bearer(ACME_KEY), payload: { user_id: 'u1' } })
    expect(status.json().servers[0].login_url).toMatch(/^https:\/\/relay\.example\.com\/base\/oauth\/start\//)
    await relayApp.close()
  })

  it('has exactly three operations, all POST, with the plugin operationIds (reset is not one)', () => {
    const operations = Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item as object).map((method) => `${method} ${path}`))
    expect(operations.sort()).toEqual(Object.keys(EXPECTED).map((path) => `post ${path}`).sort())
    for (const [path, expected] of Object.entries(EXPECTED)) {
      expect(document.paths[path].post.operationId).toBe(expected.operationId)
      expect(document.paths[path].post.operationId).toMatch(/^[a-zA-Z0-9_-]{1,64}$/)
    }
  })

  it('describes each operation for the LLM: when to call it and what to do with login_url', () => {
    for (const path of Object.keys(EXPECTED)) {
      const { summary, description } = document.paths[path].post
      expect(summary.length).toBeGreaterThan(10)
      expect(description.length).toBeGreaterThan(100)
      expect(description).toMatch(/login_url/)
      expect(description).toMatch(/show it to the user as a clickable link/)
    }
    expect(document.paths['/tools/call-tool'].post.description).toMatch(/tool_ref from mcp_tool_list/)
    expect(document.paths['/tools/call-tool'].post.description).toMatch(/JSON object string/)
  })

  it('has one application/json body per operation, flat, string/boolean only, no $ref, each property described', () => {
    for (const [path, expected] of Object.entries(EXPECTED)) {
      const { requestBody } = document.paths[path].post
      expect(Object.keys(requestBody.content)).toEqual(['application/json'])
      const schema = requestBody.content['application/json'].schema
      expect(JSON.stringify(schema)).not.toContain('$ref')
      expect(schema.type).toBe('object')
      expect(schema.required).toEqual(path === '/tools/call-tool' ? ['user_id', 'tool_ref'] : ['user_id'])
      const types = Object.fromEntries(Object.entries(schema.properties).map(([name, property]: [string, any]) => [name, property.type]))
      expect(types).toEqual(expected.properties)
      for (const property of Object.values(schema.properties) as any[]) {
        expect(Object.keys(property).sort()).toEqual(['description', 'type'])
        expect(property.description.length).toBeGreaterThan(20)
      }
    }
    const input = document.paths['/tools/call-tool'].post.requestBody.content['application/json'].schema.properties.input
    expect(input.description).toMatch(/JSON object/)
    const serverIds = document.paths['/tools/auth-status'].post.requestBody.content['application/json'].schema.properties.server_ids
    expect(serverIds.description).toMatch(/comma list or JSON array/)
  })

  it('declares bearer auth and applies it to the three operations', () => {
    expect(document.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' })
    for (const path of Object.keys(EXPECTED)) expect(document.paths[path].post.security).toEqual([{ bearerAuth: [] }])
  })

  it('has a 200 response schema for each operation, the relay-side fault (ok: false, retry_after_seconds) among them', () => {
    const schemaOf = (path: string) => document.paths[path].post.responses['200'].content['application/json'].schema
    const fault = {
      type: 'object',
      properties: {
        ok: { type: 'boolean', enum: [false] },
        error_code: { type: 'string', enum: ['STORE_UNAVAILABLE', 'RATE_LIMITED'] },
        retry_after_seconds: expect.objectContaining({ type: 'integer', description: expect.stringMatching(/wait at least this long/) }),
        message: { type: 'string' },
      },
      required: ['ok', 'error_code', 'retry_after_seconds', 'message'],
    }
    expect(schemaOf('/tools/auth-status').anyOf).toEqual([expect.objectContaining({ properties: expect.objectContaining({ all_authorized: { type: 'boolean' } }) }), expect.objectContaining(fault)])
    expect(schemaOf('/tools/list-tools').anyOf).toEqual([expect.objectContaining({ properties: expect.objectContaining({ tools: expect.anything() }) }), expect.objectContaining(fault)])
    const call = schemaOf('/tools/call-tool')
    expect(call.properties).toHaveProperty('ok')
    expect(call.properties.error_code.enum).toEqual(expect.arrayContaining(['NOT_AUTHORIZED', 'UPSTREAM_ERROR', 'STORE_UNAVAILABLE', 'RATE_LIMITED']))
    expect(call.properties.retry_after_seconds).toMatchObject({ type: 'integer' })
  })

  it('tells the model, on each operation, what to do with a relay-side fault', () => {
    for (const path of Object.keys(EXPECTED)) {
      expect(document.paths[path].post.description).toMatch(/STORE_UNAVAILABLE or RATE_LIMITED.*briefly unavailable: tell the user its message, and call again only after retry_after_seconds/)
    }
  })

  it('what it declares is what the routes accept: a Dify-style call (all strings, empty optionals) goes through', async () => {
    const { app: relayApp, calls } = await makeApp()
    const difyBodies: Record<string, Record<string, unknown>> = {
      '/tools/auth-status': { user_id: 'u1', server_id: '', server_ids: '', force_reauth: false },
      '/tools/list-tools': { user_id: 'u1', server_id: '', server_ids: 'notion,docs' },
      '/tools/call-tool': { user_id: 'u1', tool_ref: 'docs::search', input: '{"q":"x"}' },
    }
    for (const [path, payload] of Object.entries(difyBodies)) {
      const response = await relayApp.inject({ method: 'POST', url: path, headers: bearer(ACME_KEY), payload })
      expect(response.statusCode, path).toBe(200)
    }
    expect(calls.map((call) => call.request)).toEqual([
      { serverIds: undefined, forceReauth: false },
      { serverIds: ['notion', 'docs'] },
      { serverId: 'docs', toolName: 'search', input: { q: 'x' } },
    ])
    await relayApp.close()
  })
})
