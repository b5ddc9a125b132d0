/**
 * How much JSON an upstream may make the relay parse, counted on its bytes as they arrive, before
 * anything parses them (DESIGN.md §6: nothing an upstream sends can stall the relay). A byte bound
 * alone does not do it: JSON.parse of 4 MiB of `[{},{},…]` takes half a second of CPU on this
 * project's machines, and what follows it (the SDK's schema checks, the relay's answer, the tool
 * cache) costs more per value again; nesting 100,000 levels deep parses fine and then overflows the
 * stack of the first recursive walk (the relay answered 500). JSON.parse cannot be stopped part way
 * and the SDK parses upstream messages itself, so the shape is counted here, in linear time on the
 * bytes, and the stream fails once it passes a limit. Written by hand: the streaming JSON parsers
 * on npm (clarinet, stream-json, @streamparser/json) emit an event for every value and decode every
 * string, the very cost this avoids; a bound needs only the structure: strings (with their
 * escapes), containers and separators.
 */
export interface ShapeLimits {
  /** Objects and arrays inside one another. */
  readonly maxDepth: number
  /** JSON items: each object, array and string (member names included) and each `,`. */
  readonly maxItems: number
}

/** A problem with the shape, in words that finish "the answer …". */
export type ShapeProblem = string

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const LF = 0x0a
const CR = 0x0d
const COLON = 0x3a
const SPACE = 0x20
const DATA = [0x64, 0x61, 0x74, 0x61] // "data"

/**
 * The shape of one or more JSON texts, fed a byte (or a UTF-16 code unit: every character that
 * matters is ASCII, and UTF-8 and UTF-16 never use an ASCII value inside another character) at a
 * time. Items count across `restart()`s; nesting and strings start afresh.
 */
export class JsonShape {
  private depth = 0
  private items = 0
  private inString = false
  private escaped = false
  private problem: ShapeProblem | undefined
  private readonly limits: ShapeLimits

  constructor(limits: ShapeLimits) {
    this.limits = limits
  }

  /** False once the shape passed a limit (`problem` says which). */
  step(code: number): boolean {
    if (this.inString) {
      if (this.escaped) this.escaped = false
      else if (code === BACKSLASH) this.escaped = true
      else if (code === QUOTE) this.inString = false
      return true
    }
    switch (code) {
      case QUOTE:
        this.inString = true
        return this.count()
      case COMMA:
        return this.count()
      case OPEN_OBJECT:
      case OPEN_ARRAY:
        if (++this.depth > this.limits.maxDepth) return this.fail(`nests objects or arrays more than ${this.limits.maxDepth} levels deep`)
        return this.count()
      case CLOSE_OBJECT:
      case CLOSE_ARRAY:
        if (this.depth > 0) this.depth--
        return true
      default:
        return true
    }
  }

  /** Feeds a whole text (a body already read); false once past a limit. */
  stepText(text: string): boolean {
    for (let i = 0; i < text.length; i++) if (!this.step(text.charCodeAt(i))) return false
    return true
  }

  /** The next JSON text starts: nesting and strings start afresh; `items` too when asked. */
  restart(options: { items: boolean }): void {
    this.depth = 0
    this.inString = false
    this.escaped = false
    if (options.items) this.items = 0
  }

  /** What limit was passed, once one was. */
  get failure(): ShapeProblem | undefined {
    return this.problem
  }

  /** Items counted since the last restart that reset them. */
  get itemCount(): number {
    return this.items
  }

  private count(): boolean {
    if (++this.items > this.limits.maxItems) return this.fail(`holds more than ${this.limits.maxItems.toLocaleString('en')} JSON items`)
    return true
  }

  private fail(problem: ShapeProblem): false {
    this.problem ??= problem
    return false
  }
}

/**
 * The JSON shape of an event stream's `data` (WHATWG HTML, "Server-sent events": lines end with
 * CRLF, LF or CR; a field name, a colon and an optional space; an empty line ends an event): only
 * the data lines are JSON, each event a text of its own. With `perEvent`, items count per event
 * (a session's stream, bounded per event like its bytes); otherwise over the whole stream.
 */
export class EventStreamShape {
  private readonly json: JsonShape
  private lineEmpty = true
  private afterCR = false
  /** How much of "data" the field name matched so far; -1 when it is another field. */
  private matched = 0
  /** In the field's value: true for a data line. */
  private inValue = false
  private isData = false
  private leadingSpace = false
  private readonly perEvent: boolean

  constructor(limits: ShapeLimits, options: { perEvent: boolean }) {
    this.json = new JsonShape(limits)
    this.perEvent = options.perEvent
  }

  step(code: number): boolean {
    if (code === LF && this.afterCR) {
      this.afterCR = false // the LF of a CRLF: the CR ended the line
      return true
    }
    this.afterCR = code === CR
    if (code === LF || code === CR) {
      if (this.lineEmpty) this.json.restart({ items: this.perEvent })
      this.lineEmpty = true
      this.matched = 0
      this.inValue = false
      this.isData = false
      return true
    }
    this.lineEmpty = false
    if (this.inValue) {
      if (!this.isData) return true
      if (this.leadingSpace) {
        this.leadingSpace = false
        if (code === SPACE) return true
      }
      return this.json.step(code)
    }
    if (code === COLON) {
      this.inValue = true
      this.isData = this.matched === DATA.length
      this.leadingSpace = true
      return true
    }
    this.matched = this.matched >= 0 && this.matched < DATA.length && code === DATA[this.matched] ? this.matched + 1 : -1
    return true
  }

  get failure(): ShapeProblem | undefined {
    return this.json.failure
  }

  get itemCount(): number {
    return this.json.itemCount
  }
}

/** Feeds `bytes` to `shape`; the problem once a limit is passed. */
export function feedShape(shape: JsonShape | EventStreamShape, bytes: Uint8Array): ShapeProblem | undefined {
  for (let i = 0; i < bytes.length; i++) if (!shape.step(bytes[i]!)) return shape.failure
  return undefined
}
