import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { IDENTITY_OPERATION, parameterForm, RESET_OPERATION, type FieldName } from '../../src/http/schemas.ts'
import { makeApp } from './helpers.ts'

/** manifest.yaml must say what the code validates and what /openapi.json serves. */
const manifest = parse(readFileSync(new URL('../../manifest.yaml', import.meta.url), 'utf8'))
const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'))

interface Parameter {
  name: string
  type: string
  required: boolean
  form: string
  description: string
}

function parametersOf(bodySchema: any): Parameter[] {
  return Object.entries(bodySchema.properties).map(([name, property]: [string, any]) => ({
    name,
    type: property.type,
    required: (bodySchema.required ?? []).includes(name),
    form: parameterForm(name as FieldName),
    description: property.description,
  }))
}

let app: FastifyInstance
let document: any

beforeAll(async () => {
  ;({ app } = await makeApp())
  document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
})
afterAll(async () => {
  await app.close()
})

describe('manifest.yaml', () => {
  it('names the plugin and carries the package version', () => {
    expect(manifest.identity).toMatchObject({ name: 'mcp_auth_relay', version: packageJson.version })
    expect(manifest.identity.author).toBeTruthy()
    expect(manifest.identity.label.en_US).toBeTruthy()
    expect(manifest.identity.description.en_US).toBeTruthy()
    expect(manifest.identity.tags.length).toBeGreaterThan(0)
  })

  it('lists the same three tools as the OpenAPI operations, in order, with the same method and path', () => {
    const operations = Object.entries(document.paths).map(([path, item]: [string, any]) => ({
      name: item.post.operationId,
      method: 'POST',
      path,
    }))
    expect(manifest.tools.map(({ name, method, path }: any) => ({ name, method, path }))).toEqual(operations)
    expect(manifest.tools.map((tool: any) => tool.name)).toEqual(['mcp_auth_status', 'mcp_tool_list', 'mcp_tool_call'])
  })

  it('gives each tool the summary and LLM description of its OpenAPI operation', () => {
    for (const tool of manifest.tools) {
      const operation = document.paths[tool.path].post
      expect(tool.summary).toBe(operation.summary)
      expect(tool.description).toBe(operation.description)
      expect(tool.label.en_US).toBeTruthy()
    }
  })

  it('gives each tool the parameters the zod schemas declare: names, types, required flags, forms, descriptions', () => {
    for (const tool of manifest.tools) {
      const body = document.paths[tool.path].post.requestBody.content['application/json'].schema
      expect(tool.parameters).toEqual(parametersOf(body))
      for (const parameter of tool.parameters) {
        expect(['string', 'boolean']).toContain(parameter.type)
        expect(['llm', 'form']).toContain(parameter.form)
      }
    }
  })

  it('lists the three endpoints, and reset and identity take the parameters their schemas declare', async () => {
    expect(manifest.endpoints.map(({ path, method }: any) => `${method} ${path}`)).toEqual(['GET /oauth/callback', 'POST /oauth/reset', 'POST /oauth/identity'])
    const reset = manifest.endpoints.find((endpoint: any) => endpoint.path === '/oauth/reset')
    expect(reset.parameters).toEqual(parametersOf(z.toJSONSchema(RESET_OPERATION.body, { target: 'openapi-3.0' })))
    const identity = manifest.endpoints.find((endpoint: any) => endpoint.path === '/oauth/identity')
    expect(identity.parameters).toEqual(parametersOf(z.toJSONSchema(IDENTITY_OPERATION.body, { target: 'openapi-3.0' })))
    // All exist: reset and identity ask for the API key, the callback answers its page.
    expect((await app.inject({ method: 'POST', url: '/oauth/reset', payload: {} })).statusCode).toBe(401)
    expect((await app.inject({ method: 'POST', url: '/oauth/identity', payload: {} })).statusCode).toBe(401)
    expect((await app.inject({ method: 'GET', url: '/oauth/callback?code=c&state=s' })).statusCode).toBe(200)
  })
})
