import { z } from 'zod'
import type { UrlGuard } from '../oauth/url-guard.ts'

/**
 * SEP-2322 (MCP 2026-07-28, "Multi Round-Trip Requests"): what a server's `input_required` result
 * asks for, in the shape DESIGN.md §4 gives the model (`input_requests`), and the model's answers
 * (`input_response`) checked against it and turned into the `inputResponses` the retry carries.
 */

/** One requested field: the server's requested schema, flat, as the spec restricts it. */
export interface InputField {
  type: 'string' | 'number' | 'integer' | 'boolean' | 'array'
  title?: string
  description?: string
  enum?: Array<string | number>
  default?: unknown
  format?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  minItems?: number
  maxItems?: number
}

/** What the model is shown for one embedded request. */
export type InputRequestEntry =
  | { key: string; kind: 'form'; message: string; fields: Record<string, InputField>; required: string[] }
  | { key: string; kind: 'url'; message: string; url: string }

/** An `input_required` result's embedded requests, sorted by what the relay does with them. */
export interface ReadInputRequests {
  /** For the user: forms and pages. */
  readonly forUser: InputRequestEntry[]
  /** Answered by the relay itself: `roots/list` (no roots, DESIGN.md §4). */
  readonly answered: Record<string, unknown>
  /** Requests the relay turns down: sampling (it has no model), a URL it will not pass on, or anything unreadable. */
  readonly refused: string[]
}

const primitive = z
  .object({
    type: z.enum(['string', 'number', 'integer', 'boolean']),
    title: z.string().optional(),
    description: z.string().optional(),
    enum: z.array(z.union([z.string(), z.number()])).optional(),
    default: z.unknown().optional(),
    format: z.string().optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    minLength: z.number().int().nonnegative().optional(),
    maxLength: z.number().int().nonnegative().optional(),
    // MCP 2025-11-25 "Elicitation": titled single-select enums are `oneOf` of `{ const, title }`.
    oneOf: z.array(z.object({ const: z.union([z.string(), z.number()]) }).loose()).optional(),
  })
  .loose()

const multiSelect = z
  .object({
    type: z.literal('array'),
    title: z.string().optional(),
    description: z.string().optional(),
    default: z.unknown().optional(),
    minItems: z.number().int().nonnegative().optional(),
    maxItems: z.number().int().nonnegative().optional(),
    items: z
      .object({
        enum: z.array(z.string()).optional(),
        anyOf: z.array(z.object({ const: z.string() }).loose()).optional(),
      })
      .loose(),
  })
  .loose()

// Keywords such as $schema or additionalProperties are tolerated, not shown (DESIGN.md §4).
const requestedSchema = z
  .object({ type: z.literal('object').optional(), properties: z.record(z.string(), z.union([primitive, multiSelect])), required: z.array(z.string()).optional() })
  .loose()

const elicitation = z
  .object({
    method: z.literal('elicitation/create'),
    params: z
      .object({
        mode: z.enum(['form', 'url']).optional(),
        message: z.string(),
        requestedSchema: requestedSchema.optional(),
        url: z.string().optional(),
      })
      .loose(),
  })
  .loose()

/** Sorts `inputRequests` (the server's map) into what the user must answer, what the relay answers and what it refuses. */
export function readInputRequests(inputRequests: Record<string, unknown>, guard: UrlGuard): ReadInputRequests {
  const forUser: InputRequestEntry[] = []
  const answered: Record<string, unknown> = {}
  const refused: string[] = []
  for (const [key, request] of Object.entries(inputRequests)) {
    const method = (request as { method?: unknown } | null)?.method
    if (method === 'roots/list') {
      answered[key] = { roots: [] }
      continue
    }
    const parsed = elicitation.safeParse(request)
    if (!parsed.success) {
      refused.push(key)
      continue
    }
    const { mode, message, requestedSchema: schema, url } = parsed.data.params
    if (mode === 'url') {
      const page = url !== undefined && URL.canParse(url) ? new URL(url) : undefined
      // As for URL elicitation errors (user-action.ts): only a page fit for a browser goes to the model.
      const browsable = page && (page.protocol === 'https:' || (page.protocol === 'http:' && guard.isTrusted(page))) && !page.username && !page.password
      if (browsable) forUser.push({ key, kind: 'url', message, url: page.href })
      else refused.push(key)
      continue
    }
    forUser.push({ key, kind: 'form', message, fields: fieldsOf(schema), required: schema?.required ?? [] })
  }
  return { forUser, answered, refused }
}

function fieldsOf(schema: z.output<typeof requestedSchema> | undefined): Record<string, InputField> {
  const fields: Record<string, InputField> = {}
  for (const [name, property] of Object.entries(schema?.properties ?? {})) {
    if (property.type === 'array') {
      const options = property.items.enum ?? property.items.anyOf?.map((option) => option.const)
      fields[name] = prune({
        type: 'array',
        title: property.title,
        description: property.description,
        enum: options,
        default: property.default,
        minItems: property.minItems,
        maxItems: property.maxItems,
      })
    } else {
      fields[name] = prune({
        type: property.type,
        title: property.title,
        description: property.description,
        enum: property.enum ?? property.oneOf?.map((option) => option.const),
        default: property.default,
        format: property.format,
        minimum: property.minimum,
        maximum: property.maximum,
        minLength: property.minLength,
        maxLength: property.maxLength,
      })
    }
  }
  return fields
}

function prune(field: InputField): InputField {
  return Object.fromEntries(Object.entries(field).filter(([, value]) => value !== undefined)) as unknown as InputField
}

/**
 * The model's `input_response` for `requests`, as `inputResponses` for the retry (MCP 2026-07-28,
 * "Elicitation": `{ action, content? }` per request key), or a problem naming the field:
 * - `"decline"` / `"cancel"`: that action for every request;
 * - `"accept"` (or nothing) with only pages asked for: the user finished there;
 * - an object: the answers to the one form, or `{ "<key>": answers | "decline" | "cancel", … }`
 *   for several requests. Answers are checked against the requested fields.
 */
export function answersFor(requests: InputRequestEntry[], response: unknown): { inputResponses: Record<string, unknown> } | { problem: string } {
  const forms = requests.filter((request) => request.kind === 'form')
  if (response === undefined || response === 'accept') {
    if (forms.length > 0) return { problem: `input_response: is required: the answers to ${describe(forms)}, or "decline"` }
    return { inputResponses: Object.fromEntries(requests.map((request) => [request.key, { action: 'accept' }])) }
  }
  if (response === 'decline' || response === 'cancel') {
    return { inputResponses: Object.fromEntries(requests.map((request) => [request.key, { action: response }])) }
  }
  if (typeof response !== 'object' || response === null || Array.isArray(response)) {
    return { problem: 'input_response: must be an object of answers, or "decline" or "cancel"' }
  }
  const given = response as Record<string, unknown>
  const byKey = requests.length > 1 || (requests.length === 1 && Object.keys(given).length === 1 && requests[0]!.key in given && !isFieldOf(requests[0]!, requests[0]!.key))
  const inputResponses: Record<string, unknown> = {}
  for (const request of requests) {
    const answer = byKey ? given[request.key] : given
    const where = byKey ? `input_response.${request.key}` : 'input_response'
    if (answer === 'decline' || answer === 'cancel') {
      inputResponses[request.key] = { action: answer }
      continue
    }
    if (request.kind === 'url') {
      if (answer !== undefined && answer !== 'accept') return { problem: `${where}: must be "accept" once the page is done, or "decline"` }
      inputResponses[request.key] = { action: 'accept' }
      continue
    }
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
      return { problem: `${where}: must be an object with the answers to "${request.message}", or "decline"` }
    }
    const checked = checkForm(request, answer as Record<string, unknown>, where)
    if ('problem' in checked) return checked
    inputResponses[request.key] = { action: 'accept', content: checked.content }
  }
  if (byKey) {
    const unknown = Object.keys(given).find((key) => !requests.some((request) => request.key === key))
    if (unknown !== undefined) return { problem: `input_response.${unknown}: is not one of the requests (${requests.map((request) => request.key).join(', ')})` }
  }
  return { inputResponses }
}

function isFieldOf(request: InputRequestEntry, name: string): boolean {
  return request.kind === 'form' && name in request.fields
}

function describe(forms: InputRequestEntry[]): string {
  return forms.map((form) => `"${form.message}"`).join(', ')
}

function checkForm(request: Extract<InputRequestEntry, { kind: 'form' }>, answer: Record<string, unknown>, where: string): { content: Record<string, unknown> } | { problem: string } {
  for (const name of Object.keys(answer)) {
    if (!(name in request.fields)) return { problem: `${where}.${name}: is not one of the requested fields (${Object.keys(request.fields).join(', ')})` }
  }
  for (const name of request.required) {
    if (answer[name] === undefined || answer[name] === null) return { problem: `${where}.${name}: is required` }
  }
  const content: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(answer)) {
    if (value === undefined || value === null) continue
    const problem = checkValue(request.fields[name]!, value)
    if (problem) return { problem: `${where}.${name}: ${problem}` }
    content[name] = value
  }
  return { content }
}

/** MCP 2026-07-28 "Elicitation", "Requested Schema": the primitive types and their bounds. */
function checkValue(field: InputField, value: unknown): string | undefined {
  switch (field.type) {
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'must be true or false'
    case 'number':
    case 'integer': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return 'must be a number'
      if (field.type === 'integer' && !Number.isInteger(value)) return 'must be a whole number'
      if (field.minimum !== undefined && value < field.minimum) return `must be at least ${field.minimum}`
      if (field.maximum !== undefined && value > field.maximum) return `must be at most ${field.maximum}`
      return field.enum && !field.enum.includes(value) ? `must be one of ${field.enum.join(', ')}` : undefined
    }
    case 'array': {
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) return 'must be a list of strings'
      const wrong = field.enum === undefined ? undefined : value.find((item) => !field.enum!.includes(item))
      if (wrong !== undefined) return `must only hold values of ${field.enum!.join(', ')} (not ${JSON.stringify(wrong)})`
      if (field.minItems !== undefined && value.length < field.minItems) return `must hold at least ${field.minItems} values`
      if (field.maxItems !== undefined && value.length > field.maxItems) return `must hold at most ${field.maxItems} values`
      return undefined
    }
    case 'string': {
      if (typeof value !== 'string') return 'must be a string'
      if (field.enum && !field.enum.includes(value)) return `must be one of ${field.enum.join(', ')}`
      if (field.minLength !== undefined && value.length < field.minLength) return `must be at least ${field.minLength} characters`
      if (field.maxLength !== undefined && value.length > field.maxLength) return `must be at most ${field.maxLength} characters`
      return formatProblem(field.format, value)
    }
  }
}

function formatProblem(format: string | undefined, value: string): string | undefined {
  switch (format) {
    case 'email':
      return /^[^\s@]+@[^\s@]+$/.test(value) ? undefined : 'must be an email address'
    case 'uri':
      return URL.canParse(value) ? undefined : 'must be a URI'
    case 'date':
      return /^\d{4}-\d{2}-\d{2}$/.test(value) && !Number.isNaN(Date.parse(value)) ? undefined : 'must be a date (YYYY-MM-DD)'
    case 'date-time':
      return !Number.isNaN(Date.parse(value)) && /^\d{4}-\d{2}-\d{2}T/.test(value) ? undefined : 'must be a date and time (ISO 8601)'
    default:
      return undefined
  }
}
