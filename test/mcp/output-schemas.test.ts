import { describe, expect, it } from 'vitest'
import { createOutputSchemas } from '../../src/mcp/output-schemas.ts'

// Tools' output schemas come from upstream servers, which may be hostile (DESIGN.md §6).

function schemas() {
  const warnings: string[] = []
  return { warnings, outputs: createOutputSchemas({ warn: (serverId, message) => warnings.push(`${serverId}: ${message}`) }) }
}

describe('output schemas', () => {
  it('runs a catastrophic pattern in linear time: ^(a+)+$ against 5,000 a and a !', () => {
    // With JavaScript's backtracking engine this does not finish (2^5000 paths): the test would
    // never end. On RE2 it is one pass over the string.
    const { outputs } = schemas()
    const schema = { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } }
    expect(outputs.check('evil', schema, { s: `${'a'.repeat(5000)}!` })).toMatchObject({ valid: false, problem: expect.stringContaining('/s') })
    expect(outputs.check('evil', schema, { s: 'aaaa' })).toEqual({ valid: true })
  })

  it('keeps each pattern its own (Ajv keys compiled patterns by their text)', () => {
    const { outputs } = schemas()
    const schema = { type: 'object', properties: { a: { type: 'string', pattern: '^x+$' }, b: { type: 'string', pattern: '^y+$' } } }
    expect(outputs.check('s', schema, { a: 'xx', b: 'yy' })).toEqual({ valid: true })
    expect(outputs.check('s', schema, { a: 'xx', b: 'xx' }).valid).toBe(false)
  })

  it("never lets one server's $id validate another server's results", () => {
    const { outputs } = schemas()
    const asString = { $id: 'urn:shared:result', type: 'object', properties: { n: { type: 'string' } }, required: ['n'] }
    const asNumber = { $id: 'urn:shared:result', type: 'object', properties: { n: { type: 'number' } }, required: ['n'] }
    expect(outputs.check('first', asString, { n: 'one' })).toEqual({ valid: true })
    expect(outputs.check('second', asNumber, { n: 1 })).toEqual({ valid: true })
    expect(outputs.check('second', asNumber, { n: 'one' }).valid).toBe(false)
    expect(outputs.check('first', asString, { n: 1 }).valid).toBe(false)
    // Two tools of one server with one $id: each still gets its own schema.
    expect(outputs.check('first', asNumber, { n: 1 })).toEqual({ valid: true })
  })

  it('does not evaluate a pattern RE2 cannot read (a look-ahead), and says so once', () => {
    const { outputs, warnings } = schemas()
    const schema = { type: 'object', properties: { p: { type: 'string', pattern: '^(?=.*\\d).+$' } } }
    expect(outputs.check('lookahead', schema, { p: 'no digits' })).toEqual({ valid: true })
    expect(outputs.check('lookahead', schema, { p: 'still none' })).toEqual({ valid: true })
    expect(warnings).toEqual([expect.stringMatching(/^lookahead: output schema pattern .* is not evaluated/)])
  })

  it('reads draft-07 and 2020-12 schemas, and says when a schema cannot be used', () => {
    const { outputs } = schemas()
    const draft7 = { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { t: { type: 'array', items: [{ type: 'string' }] } } }
    expect(outputs.check('d7', draft7, { t: ['x'] })).toEqual({ valid: true })
    expect(outputs.check('d7', draft7, { t: [1] }).valid).toBe(false)
    const modern = { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object', properties: { t: { type: 'array', prefixItems: [{ type: 'string' }] } } }
    expect(outputs.check('d2020', modern, { t: [1] }).valid).toBe(false)
    expect(outputs.check('odd', { $schema: 'https://example.com/my-dialect', type: 'object' }, {})).toMatchObject({ valid: false, problem: expect.stringContaining('cannot be used') })
  })
})
