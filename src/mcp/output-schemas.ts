import { Ajv, type AnySchema, type ValidateFunction } from 'ajv'
import { Ajv2019 } from 'ajv/dist/2019.js'
import { Ajv2020 } from 'ajv/dist/2020.js'
import formats from 'ajv-formats'
import { RE2JS } from 're2js'

// ajv-formats is CommonJS: its function is the default export, typed as a namespace.
const addFormats = formats as unknown as (engine: Ajv) => void

/** Distinct output schemas kept compiled per server before its engine starts afresh. */
const MAX_COMPILED_PER_SERVER = 500

export type OutputCheck = { valid: true } | { valid: false; problem: string }

export interface OutputSchemas {
  /**
   * MCP "Tools", "Output Schema": a tool's `structuredContent` checked against its
   * `outputSchema`. A schema the relay cannot compile is reported as such.
   */
  check(serverId: string, outputSchema: unknown, structuredContent: unknown): OutputCheck
}

/**
 * The relay checks structured results itself, for both MCP revisions (the SDK's own check reads
 * its response cache, which the relay bypasses, and on a 2026-07-28 `input_required` result it
 * would refuse every tool with an output schema before the question reached the user). What an
 * upstream sends here must not stall or cross the relay (DESIGN.md §6):
 * - each server has its own engines, so one server's `$id` never validates another's results
 *   (and a schema whose `$id` another schema of the same server took gets an engine of its own);
 * - `pattern` runs on RE2 (re2js, linear time): `^(a+)+$` against `aaaa…a!` costs microseconds,
 *   not the seconds JavaScript's backtracking engine spends blocking every tenant. A pattern RE2
 *   cannot read (look-arounds, back-references) is not evaluated: it passes.
 * Engines per dialect as the SDK's validator chooses them: no `$schema` or 2020-12 → Ajv2020,
 * 2019-09 → Ajv2019, draft-07/06 → Ajv (draft-07).
 */
export function createOutputSchemas(deps: { warn: (serverId: string, message: string) => void }): OutputSchemas {
  const servers = new Map<string, { engines: Map<Dialect, Ajv>; compiled: Map<string, ValidateFunction | Error> }>()

  function compile(serverId: string, schema: object): ValidateFunction | Error {
    let server = servers.get(serverId)
    if (!server || server.compiled.size >= MAX_COMPILED_PER_SERVER) {
      server = { engines: new Map(), compiled: new Map() }
      servers.set(serverId, server)
    }
    const text = JSON.stringify(schema)
    const known = server.compiled.get(text)
    if (known) return known
    const dialect = dialectOf(schema)
    let compiled: ValidateFunction | Error
    if (dialect === undefined) {
      compiled = new Error(`its $schema ${JSON.stringify((schema as { $schema?: unknown }).$schema)} is not a JSON Schema dialect the relay reads`)
    } else {
      let engine = server.engines.get(dialect)
      if (!engine) {
        engine = createEngine(dialect, (pattern) => deps.warn(serverId, `output schema pattern ${JSON.stringify(pattern)} is not evaluated: RE2 cannot read it`))
        server.engines.set(dialect, engine)
      }
      compiled = tryCompile(engine, schema)
      // Two schemas of one server with one `$id`: the second gets an engine of its own.
      if (compiled instanceof Error && /already exists/.test(compiled.message)) {
        compiled = tryCompile(createEngine(dialect, (pattern) => deps.warn(serverId, `output schema pattern ${JSON.stringify(pattern)} is not evaluated: RE2 cannot read it`)), schema)
      }
    }
    server.compiled.set(text, compiled)
    return compiled
  }

  return {
    check(serverId, outputSchema, structuredContent) {
      if (typeof outputSchema !== 'object' || outputSchema === null) return { valid: true }
      const validate = compile(serverId, outputSchema)
      if (validate instanceof Error) return { valid: false, problem: `the tool's output schema cannot be used (${validate.message.slice(0, 200)})` }
      if (validate(structuredContent)) return { valid: true }
      const first = validate.errors?.[0]
      return { valid: false, problem: `the structured result does not match the tool's output schema (${first ? `${first.instancePath || '/'} ${first.message}` : 'invalid'})` }
    },
  }
}

type Dialect = '2020-12' | '2019-09' | 'draft-07'

function dialectOf(schema: object): Dialect | undefined {
  const declared = (schema as { $schema?: unknown }).$schema
  if (declared === undefined || (typeof declared === 'string' && declared.includes('2020-12'))) return '2020-12'
  if (typeof declared !== 'string') return undefined
  if (declared.includes('2019-09')) return '2019-09'
  if (/draft-0[67]\//.test(declared)) return 'draft-07'
  return undefined
}

function createEngine(dialect: Dialect, notEvaluated: (pattern: string) => void): Ajv {
  const options = { strict: false, allErrors: false, validateSchema: false, validateFormats: true, code: { regExp: re2(notEvaluated) } }
  const engine = dialect === '2020-12' ? new Ajv2020(options) : dialect === '2019-09' ? new Ajv2019(options) : new Ajv(options)
  addFormats(engine)
  return engine
}

function tryCompile(engine: Ajv, schema: object): ValidateFunction | Error {
  try {
    return engine.compile(schema as AnySchema)
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error))
  }
}

/**
 * Ajv's `code.regExp` engine on RE2. Ajv keys compiled patterns by the engine object's
 * `toString()`, so each one names its own pattern (the default Object string would make every
 * pattern the first one compiled).
 */
function re2(notEvaluated: (pattern: string) => void) {
  const engine = (pattern: string, flags: string) => {
    const name = `/${pattern}/${flags}`
    try {
      const compiled = RE2JS.compile(pattern)
      return { test: (text: string) => compiled.matcher(text).find(), toString: () => name }
    } catch {
      notEvaluated(pattern)
      return { test: () => true, toString: () => name }
    }
  }
  // Used only by Ajv's standalone code generation, which the relay does not use.
  engine.code = 're2js'
  return engine
}
