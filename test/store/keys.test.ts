import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { storeKey } from '../../src/store/keys.ts'

/** Inverse of storeKey, written independently here to prove no two part lists share a key. */
function parseKey(key: string): string[] {
  return key.split(':').map((part) =>
    part.replace(/%u([0-9A-F]{4})|((?:%[0-9A-F]{2})+)/g, (_, unit: string | undefined, bytes: string | undefined) =>
      unit !== undefined ? String.fromCharCode(Number.parseInt(unit, 16)) : decodeURIComponent(bytes!),
    ),
  )
}

describe('storeKey', () => {
  it.each([
    [['a:b', 'c'], ['a', 'b:c']],
    [['a', ''], ['a:']],
    [['%3A'], [':']],
    [['%uD800'], ['\uD800']],
    [['relay/tokens', 'x'], ['x']],
  ])('%j and %j differ', (left, right) => {
    expect(storeKey(...left)).not.toBe(storeKey(...right))
  })

  it('joins encoded parts with ":" and keeps readable parts readable', () => {
    expect(storeKey('acme', 'user-1', 'https://mcp.example.com/mcp')).toBe('acme:user-1:https%3A%2F%2Fmcp.example.com%2Fmcp')
  })

  it('keeps unicode, control characters and lone surrogates, as ASCII without NUL', () => {
    const parts = ['租户', 'ユーザー😀', 'tab\tnul\u0000del\u007f', '\uD800', 'x\uDFFFy', '\uDBFF\uDFFF']
    const key = storeKey(...parts)
    expect(key).toMatch(/^[\x21-\x7e]+$/)
    expect(parseKey(key)).toEqual(parts)
  })

  it('never maps two different part lists to one key (property)', () => {
    const parts = fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 4 })
    fc.assert(
      fc.property(parts, (list) => {
        expect(parseKey(storeKey(...list))).toEqual(list)
      }),
      { numRuns: 2000 },
    )
  })
})
