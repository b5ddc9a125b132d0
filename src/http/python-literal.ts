/**
 * Reading a tool parameter's text as JSON or as a Python literal (DESIGN.md §4).
 *
 * Dify hands a Custom Tool every non-string value the model produced as Python's `str()` of it
 * (api/core/tools/custom_tool/tool.py, `_convert_body_property_type`: `str(value)` for a string
 * parameter): `{"text": "hi"}` arrives as `{'text': 'hi'}`, `true` as `True`, `null` as `None`.
 * `str()` of a dict or list writes each string with `repr()`: single quotes (double quotes when
 * the text holds a single quote and no double quote), `\\`, `\'`, `\t`, `\n`, `\r`, `\xhh`,
 * `\uhhhh`, `\Uhhhhhhhh` for what is not printable, and printable non-ASCII as it is.
 *
 * The reader takes that syntax (the part of what `ast.literal_eval` takes that a JSON value can
 * need) and reads it as the JSON value the model sent: strings (every escape of a plain string literal; `\N{name}` is refused, `str()` never
 * writes it), decimal ints and floats (underscores allowed), True/False/None (and JSON's
 * true/false/null, which a model mixes in), dicts with string keys and lists, nested, with a
 * trailing comma. Nothing is evaluated: there are no names, calls or operators to evaluate.
 * Not read: tuples and sets (`str()` of a JSON value never holds one), bytes, prefixed or
 * triple-quoted strings, hex/octal/binary numbers, complex numbers. `inf` and `nan` (Python's
 * json module reads `Infinity` and `NaN`, so `str()` can write them) are refused: JSON cannot
 * carry them. An int beyond 2^53 is read as the nearest double, as JSON.parse reads the same digits.
 */

export type LiteralValue = null | boolean | number | string | LiteralValue[] | { [key: string]: LiteralValue }

/**
 * No tool's arguments nest this deep; deeper input would only overflow the stack of the JSON
 * serializer on its way upstream, which would then read as the server's failure.
 */
export const MAX_LITERAL_DEPTH = 100

export const TOO_DEEP = `must not nest objects or arrays more than ${MAX_LITERAL_DEPTH} levels deep`

/**
 * `{ value }`, or `{ problem, malformed }`: `malformed` when the text is neither JSON nor a
 * Python literal (`problem` then says where it goes wrong, e.g. "a string is not closed
 * (character 12)"), otherwise a readable value JSON cannot carry or that nests too deep
 * (`problem` is then the whole complaint, e.g. TOO_DEEP). A problem never quotes the text.
 */
export type LiteralResult = { value: LiteralValue } | { problem: string; malformed: boolean }

/** Reads `text` as JSON (as JSON.parse does) or, failing that, as a Python literal. */
export function readLiteral(text: string): LiteralResult {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return readPythonLiteral(text)
  }
  if (typeof json === 'object' && json !== null && isDeeperThan(json, MAX_LITERAL_DEPTH)) return { problem: TOO_DEEP, malformed: false }
  return { value: json as LiteralValue }
}

/** Iterative, so that measuring a 100,000-level value does not overflow the stack itself. */
export function isDeeperThan(value: object, max: number): boolean {
  const pending: Array<[unknown, number]> = [[value, 1]]
  while (pending.length > 0) {
    const [current, depth] = pending.pop()!
    if (typeof current !== 'object' || current === null) continue
    if (depth > max) return true
    for (const child of Object.values(current)) pending.push([child, depth + 1])
  }
  return false
}

/** Thrown inside the reader only; readPythonLiteral turns it into a LiteralResult. */
class LiteralProblem extends Error {
  readonly malformed: boolean

  constructor(message: string, malformed: boolean) {
    super(message)
    this.malformed = malformed
  }
}

// Python's whitespace between tokens inside brackets (a backslash-newline is a line joint).
const SPACE = /(?:[ \t\n\r\f]|\\\r?\n)*/y
// A decimal int or float as Python writes one; underscores only between digits.
const NUMBER = /[+-]?(?:(?:\d(?:_?\d)*)?\.\d(?:_?\d)*|\d(?:_?\d)*\.?)(?:[eE][+-]?\d(?:_?\d)*)?/y
const NAME = /[A-Za-z_][A-Za-z0-9_]*/y
const KEYWORDS: Readonly<Record<string, LiteralValue>> = { True: true, False: false, None: null, true: true, false: false, null: null }
const NOT_JSON_NUMBERS = new Set(['inf', 'nan', 'Infinity', 'NaN'])
// Python's one-character escapes (the Python Language Reference, 2.4.1 "Escape sequences").
const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v',
}
const OCTAL_ESCAPE = /[0-7]{1,3}/y
const HEX_ESCAPES: Readonly<Record<string, { length: number; digits: RegExp }>> = {
  x: { length: 2, digits: /[0-9A-Fa-f]{2}/y },
  u: { length: 4, digits: /[0-9A-Fa-f]{4}/y },
  U: { length: 8, digits: /[0-9A-Fa-f]{8}/y },
}

/** Reads `text` as one Python literal: see the module comment for what that takes. */
export function readPythonLiteral(text: string): LiteralResult {
  let position = 0

  const at = () => `(character ${position + 1})`
  const malformed = (what: string) => new LiteralProblem(`${what} ${at()}`, true)

  function skipSpace(): void {
    SPACE.lastIndex = position
    SPACE.exec(text)
    position = SPACE.lastIndex
  }

  function readValue(depth: number): LiteralValue {
    skipSpace()
    const char = text[position]
    if (char === undefined) throw malformed('it ends where a value should be')
    if (char === '{') return readDict(depth + 1)
    if (char === '[') return readList(depth + 1)
    if (char === "'" || char === '"') return readString()
    if (/[A-Za-z_]/.test(char)) return readName()
    if (/[-+.\d]/.test(char)) return readNumber()
    if (char === '(') throw malformed('a tuple cannot be read, only a list [...]')
    throw malformed('no value can start with this character')
  }

  function enter(depth: number): void {
    if (depth > MAX_LITERAL_DEPTH) throw new LiteralProblem(TOO_DEEP, false)
    position += 1
  }

  function readDict(depth: number): Record<string, LiteralValue> {
    enter(depth)
    const dict: Record<string, LiteralValue> = {}
    for (;;) {
      skipSpace()
      if (text[position] === '}') break
      const quote = text[position]
      if (quote !== "'" && quote !== '"') {
        throw malformed(quote === undefined ? 'a dict is not closed' : 'a dict key must be a quoted string')
      }
      const key = readString()
      skipSpace()
      if (text[position] !== ':') throw malformed('a ":" must follow a dict key')
      position += 1
      const value = readValue(depth)
      // Like JSON.parse: "__proto__" becomes an own property, never the object's prototype.
      if (key === '__proto__') Object.defineProperty(dict, key, { value, enumerable: true, writable: true, configurable: true })
      else dict[key] = value
      skipSpace()
      if (text[position] === ',') {
        position += 1
        continue
      }
      if (text[position] === '}') break
      throw malformed(text[position] === undefined ? 'a dict is not closed' : 'a "," or "}" must follow a dict value')
    }
    position += 1
    return dict
  }

  function readList(depth: number): LiteralValue[] {
    enter(depth)
    const list: LiteralValue[] = []
    for (;;) {
      skipSpace()
      if (text[position] === ']') break
      list.push(readValue(depth))
      skipSpace()
      if (text[position] === ',') {
        position += 1
        continue
      }
      if (text[position] === ']') break
      throw malformed(text[position] === undefined ? 'a list is not closed' : 'a "," or "]" must follow a list item')
    }
    position += 1
    return list
  }

  function readString(): string {
    const quote = text[position]!
    const start = position
    position += 1
    let value = ''
    let runStart = position
    for (;;) {
      const char = text[position]
      if (char === undefined || char === '\n' || char === '\r') {
        position = start
        throw malformed('a string is not closed')
      }
      if (char === quote) break
      if (char !== '\\') {
        position += 1
        continue
      }
      value += text.slice(runStart, position)
      value += readEscape()
      runStart = position
    }
    value += text.slice(runStart, position)
    position += 1
    return value
  }

  /** At a backslash inside a string: reads the escape and returns what it stands for. */
  function readEscape(): string {
    const letter = text[position + 1]
    if (letter === undefined) throw malformed('a string is not closed')
    if (Object.hasOwn(SIMPLE_ESCAPES, letter)) {
      position += 2
      return SIMPLE_ESCAPES[letter]!
    }
    if (letter === '\n') {
      position += 2
      return ''
    }
    if (letter === '\r') {
      position += text[position + 2] === '\n' ? 3 : 2
      return ''
    }
    OCTAL_ESCAPE.lastIndex = position + 1
    const octal = OCTAL_ESCAPE.exec(text)?.[0]
    if (octal !== undefined) {
      position += 1 + octal.length
      return String.fromCodePoint(Number.parseInt(octal, 8))
    }
    const hexEscape = Object.hasOwn(HEX_ESCAPES, letter) ? HEX_ESCAPES[letter]! : undefined
    if (hexEscape !== undefined) {
      hexEscape.digits.lastIndex = position + 2
      const hex = hexEscape.digits.exec(text)?.[0]
      if (hex === undefined) throw malformed(`a \\${letter} escape needs ${hexEscape.length} hex digits`)
      const codePoint = Number.parseInt(hex, 16)
      if (codePoint > 0x10ffff) throw malformed(`a \\${letter} escape names no character`)
      position += 2 + hex.length
      return String.fromCodePoint(codePoint)
    }
    if (letter === 'N') throw malformed('a \\N{...} escape cannot be read; write the character itself')
    // Python keeps an unknown escape as it is, backslash included.
    position += 1
    return '\\'
  }

  function readName(): LiteralValue {
    NAME.lastIndex = position
    const name = NAME.exec(text)![0]
    if (Object.hasOwn(KEYWORDS, name)) {
      position += name.length
      return KEYWORDS[name]!
    }
    if (NOT_JSON_NUMBERS.has(name)) throw new LiteralProblem(`holds ${name}, which JSON cannot carry ${at()}`, false)
    throw malformed('only True, False and None can stand unquoted')
  }

  function readNumber(): number {
    const sign = text[position] === '-' || text[position] === '+' ? 1 : 0
    NAME.lastIndex = position + sign
    const name = NAME.exec(text)?.[0]
    if (name !== undefined && NOT_JSON_NUMBERS.has(name)) {
      throw new LiteralProblem(`holds ${text.slice(position, position + sign + name.length)}, which JSON cannot carry ${at()}`, false)
    }
    NUMBER.lastIndex = position
    const token = NUMBER.exec(text)?.[0]
    if (token === undefined) throw malformed('a number is not complete')
    const digits = token.replaceAll('_', '')
    // Python refuses an int with leading zeros ("007", an old octal spelling); "00" is zero.
    if (/^[+-]?0+[1-9]\d*$/.test(digits)) throw malformed('an int cannot start with 0')
    if (/[A-Za-z0-9_.]/.test(text[position + token.length] ?? '')) throw malformed('a number Python or JSON can read is expected')
    const value = Number(digits)
    if (!Number.isFinite(value)) throw new LiteralProblem(`holds a number too large for JSON ${at()}`, false)
    position += token.length
    return value
  }

  try {
    const value = readValue(0)
    skipSpace()
    if (position < text.length) throw malformed('more follows the value')
    return { value }
  } catch (error) {
    if (error instanceof LiteralProblem) return { problem: error.message, malformed: error.malformed }
    throw error
  }
}
