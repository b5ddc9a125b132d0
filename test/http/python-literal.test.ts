// What Dify sends for a parameter the model gave as an object, a list, a boolean or null: Python's
// str() of it (api/core/tools/custom_tool/tool.py). The relay must read it back as exactly the JSON
// value the model sent. Python 3 itself writes the strings here: one python3 run per batch.
import { spawnSync } from 'node:child_process'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_LITERAL_DEPTH, readLiteral, TOO_DEEP } from '../../src/http/python-literal.ts'

/** Python's str() of each JSON value, all in one python3 run (values in on stdin, strings out as a JSON array). */
function pythonStr(values: readonly unknown[]): string[] {
  const script = 'import json, sys\nvalues = json.loads(sys.stdin.buffer.read().decode("utf-8"))\nprint(json.dumps([str(value) for value in values]))'
  const run = spawnSync('python3', ['-c', script], { input: JSON.stringify(values), encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 1024 * 1024 })
  if (run.error) throw run.error
  expect(run.status, run.stderr).toBe(0)
  return JSON.parse(run.stdout) as string[]
}

/** The value as the model's JSON carries it: what JSON.stringify/JSON.parse make of it (-0 is 0). */
const asJson = (value: unknown) => JSON.parse(JSON.stringify(value))

// Characters repr() treats each its own way: quotes (it picks the other quote, or escapes), the
// backslash, named escapes, other controls (\xhh), non-printable BMP (\uhhhh) and astral
// (\Uhhhhhhhh) characters, lone surrogates, and printable non-ASCII (kept as is).
const TRICKY = ["'", '"', '\\', '\n', '\r', '\t', '\x00', '\x07', '\x1b', '\x7f', '\x85', '\xa0', '\xad', 'é', 'ß', '中', '\u2028', '\u200b', '\ufeff', '\ud800', '\udfff', '😀', '\u{1d11e}', '\u{e0001}', '\u{10ffff}', ' ', 'N', '{', '}', 'x']
const text = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.string({ unit: fc.constantFrom(...TRICKY), maxLength: 12 }),
)
const number = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  // Ints within the range JSON (and so the model's own JSON, read by JavaScript) carries exactly.
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
)
const leaf = fc.oneof(text, number, fc.boolean(), fc.constant(null))
const { value: nested } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, tie('list'), tie('dict')),
  list: fc.array(tie('value'), { maxLength: 5 }),
  dict: fc.dictionary(text, tie('value'), { maxKeys: 5 }),
}))
// What str() is applied to: a dict or list (the common case), or a bare number, boolean or None.
// (A bare string is not: str() of a string is the string itself, and reaches the relay as it is.)
const parameterValue = fc.oneof(
  { weight: 4, arbitrary: fc.dictionary(text, nested, { maxKeys: 6 }) },
  { weight: 2, arbitrary: fc.array(nested, { maxLength: 6 }) },
  { weight: 1, arbitrary: fc.oneof(number, fc.boolean(), fc.constant(null)) },
)

describe("readLiteral reads Python's str() of a JSON value as that value", () => {
  it('for 2,000 generated values (nested dicts and lists; quotes, backslashes, controls, non-ASCII, astral; ints, floats, booleans, null)', () => {
    const values = fc.sample(parameterValue, { numRuns: 2000, seed: 20_261_210 })
    const strings = pythonStr(values)
    expect(strings).toHaveLength(values.length)
    // The batch really exercised what it claims: Python wrote each of these forms somewhere.
    const all = strings.join('\n')
    for (const form of ["'", '"', "\\'", '\\\\', '\\n', '\\x', '\\u', '\\U', 'True', 'False', 'None', 'e-', '😀', 'é']) {
      expect(all, form).toContain(form)
    }
    for (const [index, value] of values.entries()) {
      expect(readLiteral(strings[index]!), strings[index]).toEqual({ value: asJson(value) })
    }
  })

  it("for the issue's own cases", () => {
    const values = [{ text: 'hi' }, ['a', 'b'], true, false, null, { text: 'hi', n: 1, ok: true, x: null }, { quote: "it's \"both\"" }]
    const strings = pythonStr(values)
    expect(strings.slice(0, 5)).toEqual(["{'text': 'hi'}", "['a', 'b']", 'True', 'False', 'None'])
    for (const [index, value] of values.entries()) expect(readLiteral(strings[index]!)).toEqual({ value })
  })

  it('reads an int beyond 2^53 as JSON.parse reads the same digits (the nearest double)', () => {
    const [big, negative] = pythonStr([{ n: 2 ** 64 }, [-(2 ** 60) - 1]]).map((text) => readLiteral(text))
    expect(big).toEqual({ value: { n: JSON.parse('18446744073709551616') } })
    expect(negative).toEqual({ value: [JSON.parse('-1152921504606846977')] })
  })
})

describe('readLiteral, by hand', () => {
  const read: Array<[string, string, unknown]> = [
    ['JSON, as JSON.parse reads it', '{"a": [1, "x\\/y"], "b": true}', { a: [1, 'x/y'], b: true }],
    ['a trailing comma in a dict and a list', "{'a': [1, 2,], 'b': 3,}", { a: [1, 2], b: 3 }],
    ['whitespace and line breaks between tokens', "{\n  'a' :\t[ 1 ,\r\n 2 ]\n}", { a: [1, 2] }],
    ['every escape of a plain string literal', "'\\a\\b\\f\\n\\r\\t\\v\\0\\101\\x41\\u0041\\U00000041\\'\\\"\\\\'", '\x07\b\f\n\r\t\v\0AAAA\'"\\'],
    ['an unknown escape, kept with its backslash (as Python keeps it)', "'C:\\dir\\q'", 'C:\\dir\\q'],
    ['a backslash-newline inside a string (a line joint)', "'a\\\nb'", 'ab'],
    ['double quotes around a single quote', `["it's"]`, ["it's"]],
    ['ints with underscores, floats in every form', '[1_000, -5, +5, 1.5, .5, 5., 1e-07, 1E+21, -0.0]', [1000, -5, 5, 1.5, 0.5, 5, 1e-7, 1e21, -0]],
    ["JSON's true/false/null mixed into Python", "{'a': true, 'b': None, 'c': null}", { a: true, b: null, c: null }],
    ['an empty dict and list', '[{}, []]', [{}, []]],
  ]
  for (const [name, text, value] of read) {
    it(`reads ${name}`, () => {
      expect(readLiteral(text)).toEqual({ value })
    })
  }

  it('keeps "__proto__" as an own key, as JSON.parse does, and leaves Object.prototype alone', () => {
    const result = readLiteral("{'__proto__': {'polluted': True}}") as { value: Record<string, unknown> }
    expect(Object.keys(result.value)).toEqual(['__proto__'])
    expect(Object.getPrototypeOf(result.value)).toBe(Object.prototype)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  const malformed: Array<[string, string, string]> = [
    ['an unclosed dict', "{'text': 'hi'", 'a dict is not closed (character 14)'],
    ['an unclosed string', "{'text': 'hi}", 'a string is not closed (character 10)'],
    ['a newline inside a string', "['a\nb']", 'a string is not closed (character 2)'],
    ['a missing colon', "{'a' 1}", 'a ":" must follow a dict key (character 6)'],
    ['a key that is not a string', '{1: 2}', 'a dict key must be a quoted string (character 2)'],
    ['a set', "{'a', 'b'}", 'a ":" must follow a dict key (character 5)'],
    ['a tuple', "('a', 'b')", 'a tuple cannot be read, only a list [...] (character 1)'],
    ['a call (never evaluated)', "__import__('os').system('true')", 'only True, False and None can stand unquoted (character 1)'],
    ['a name', '[x]', 'only True, False and None can stand unquoted (character 2)'],
    ['an operator expression', '[1 + 2]', 'a "," or "]" must follow a list item (character 4)'],
    ['hex, octal, binary', '[0x10]', 'a number Python or JSON can read is expected (character 2)'],
    ['a complex number', '[1j]', 'a number Python or JSON can read is expected (character 2)'],
    ['leading zeros', '[007]', 'an int cannot start with 0 (character 2)'],
    ['a bytes literal', "[b'x']", 'only True, False and None can stand unquoted (character 2)'],
    ['a short \\x escape', "'\\x4'", 'a \\x escape needs 2 hex digits (character 2)'],
    ['a \\U escape past U+10FFFF', "'\\U00110000'", 'a \\U escape names no character (character 2)'],
    ['a \\N{...} escape', "'\\N{BULLET}'", 'a \\N{...} escape cannot be read; write the character itself (character 2)'],
    ['text after the value', '{} {}', 'more follows the value (character 4)'],
    ['a character no value starts with', "{'a': <1>}", 'no value can start with this character (character 7)'],
    ['nothing', '   ', 'it ends where a value should be (character 4)'],
    ['a plain sentence', 'find the report', 'only True, False and None can stand unquoted (character 1)'],
  ]
  for (const [name, text, problem] of malformed) {
    it(`refuses ${name}: "${problem}"`, () => {
      expect(readLiteral(text)).toEqual({ problem, malformed: true })
    })
  }

  const unfit: Array<[string, string, string]> = [
    ['inf', "{'a': inf}", 'holds inf, which JSON cannot carry (character 7)'],
    ['-inf', '[-inf]', 'holds -inf, which JSON cannot carry (character 2)'],
    ['nan', '[1, nan]', 'holds nan, which JSON cannot carry (character 5)'],
    ['a float past the double range', "{'a': 1e400}", 'holds a number too large for JSON (character 7)'],
  ]
  for (const [name, text, problem] of unfit) {
    it(`refuses ${name}, which JSON cannot carry`, () => {
      expect(readLiteral(text)).toEqual({ problem, malformed: false })
    })
  }

  it(`reads ${MAX_LITERAL_DEPTH} levels and refuses one more, in both syntaxes, without overflowing the stack at 100,000`, () => {
    const nest = (levels: number, open: string, close: string) => open.repeat(levels) + close.repeat(levels)
    expect(readLiteral(nest(MAX_LITERAL_DEPTH, '[', ']'))).toHaveProperty('value')
    expect(readLiteral(nest(MAX_LITERAL_DEPTH, "{'a': ", '}').replace("{'a': }", '{}'))).toHaveProperty('value')
    for (const levels of [MAX_LITERAL_DEPTH + 1, 100_000]) {
      expect(readLiteral(nest(levels, '[', ']'))).toEqual({ problem: TOO_DEEP, malformed: false })
      expect(readLiteral(nest(levels, "{'a': ", '}').replace("{'a': }", '{}'))).toEqual({ problem: TOO_DEEP, malformed: false })
    }
  })
})
