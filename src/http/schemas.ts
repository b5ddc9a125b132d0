import { z } from 'zod'
import { RelayError } from '../errors.ts'
import { isDeeperThan, MAX_LITERAL_DEPTH, readLiteral, TOO_DEEP, type LiteralResult } from './python-literal.ts'

/**
 * Request bodies of the three tool routes, reset and identity: the one source of truth for validation,
 * for `/openapi.json` and for `manifest.yaml` (a test holds the manifest to these).
 *
 * Each field is written twice, side by side: `accepted` is what the relay takes (lenient, as
 * DESIGN.md §4 asks: Dify variables and LLMs send strings for everything), `declared` is what
 * Dify is told (flat string or boolean, because its Custom Tool importer reads nothing else).
 */

/** Where Dify fills a parameter: `llm` lets the model choose it, `form` is set in the workflow. */
export type ParameterForm = 'llm' | 'form'

interface Field {
  readonly accepted: z.ZodType
  readonly declared: z.ZodType
  readonly form: ParameterForm
}

const CONTROL_CHARACTERS = /\p{Cc}/u
const SERVER_IDS_MESSAGE = 'must be a comma list, or a JSON or Python list of server ids'
const INPUT_MESSAGE = 'must be a JSON object, or a string holding one as JSON or as a Python dict'

const requiredOr = (message: string) => (issue: { input?: unknown }) => (issue.input === undefined ? 'is required' : message)

/** Dify sends "" (and some clients null) for an optional parameter nobody filled in. */
function blankToUndefined(value: unknown): unknown {
  if (value === null) return undefined
  if (typeof value === 'string' && value.trim() === '') return undefined
  return value
}

const userId = z
  .string({ error: requiredOr('must be a string') })
  .trim()
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters')
  .refine((value) => !CONTROL_CHARACTERS.test(value), 'must not contain control characters')

const serverId = z.preprocess(blankToUndefined, z.string({ error: 'must be a string' }).trim().optional())

const serverIds = z
  .preprocess(blankToUndefined, z.union([z.array(z.string()), z.string()], { error: SERVER_IDS_MESSAGE }).optional())
  .transform((value, ctx): string[] | undefined => {
    if (value === undefined) return undefined
    let list: unknown = value
    if (typeof value === 'string') {
      const text = value.trim()
      if (text.startsWith('[')) {
        // A JSON array, or Python's str() of a list: "['notion', 'docs']".
        const read = readLiteral(text)
        if (!('value' in read)) {
          ctx.addIssue({ code: 'custom', message: literalProblem(SERVER_IDS_MESSAGE, read) })
          return z.NEVER
        }
        list = read.value
        if (!Array.isArray(list) || !list.every((item) => typeof item === 'string')) {
          ctx.addIssue({ code: 'custom', message: SERVER_IDS_MESSAGE })
          return z.NEVER
        }
      } else {
        list = text.split(',')
      }
    }
    // An LLM writes `"notion", "docs"` as often as `notion,docs`: drop the quotes it adds.
    const ids = (list as string[]).map((item) => item.trim().replace(/^["']+|["']+$/g, '').trim()).filter(Boolean)
    return ids.length === 0 ? undefined : [...new Set(ids)]
  })

const forceReauth = z.preprocess((value) => {
  let blank = blankToUndefined(value)
  if (typeof blank === 'string') {
    const text = blank.trim().toLowerCase()
    if (text === 'true' || text === '1') return true
    if (text === 'false' || text === '0') return false
    // Python's str() of what the model sent: "None", "1.0".
    const read = readLiteral(blank.trim())
    if ('value' in read && typeof read.value !== 'string') blank = blankToUndefined(read.value)
  }
  if (blank === 1) return true
  if (blank === 0) return false
  return blank
}, z.boolean({ error: 'must be true or false' }).default(false))

const confirmCode = z.preprocess(
  blankToUndefined,
  z.string({ error: 'must be a string' }).trim().max(64, 'must be at most 64 characters').optional(),
)

const toolRef = z
  .string({ error: requiredOr('must be a string') })
  .trim()
  .min(1, 'is required')
  .transform((value, ctx) => {
    // DESIGN.md §4: split at the first `::`; `a::b::c` is tool `b::c` on server `a`.
    const separator = value.indexOf('::')
    if (separator <= 0 || separator + 2 >= value.length) {
      ctx.addIssue({ code: 'custom', message: 'must be "server_id::tool_name", exactly as mcp_tool_list gives it' })
      return z.NEVER
    }
    return { serverId: value.slice(0, separator), toolName: value.slice(separator + 2) }
  })

/** `input` (or the older `arguments`): an object, or a string holding one; "" means {}. */
function parseToolInput(value: unknown): { input: Record<string, unknown> } | { problem: string } {
  if (value === undefined) return { input: {} }
  if (typeof value === 'string') {
    // LLMs like to wrap what they write in a Markdown code fence.
    const text = value.trim().replace(/^```(?:json|python|py)?\s*([\s\S]*?)\s*```$/i, '$1')
    if (text === '') return { input: {} }
    const read = readLiteral(text)
    if (!('value' in read)) return { problem: literalProblem(INPUT_MESSAGE, read) }
    return isObject(read.value) ? { input: read.value } : { problem: INPUT_MESSAGE }
  }
  if (!isObject(value)) return { problem: INPUT_MESSAGE }
  if (isDeeperThan(value, MAX_LITERAL_DEPTH)) return { problem: TOO_DEEP }
  return { input: value }
}

const INPUT_RESPONSE_MESSAGE = 'must be an object of answers (or a string holding one), or "accept", "decline" or "cancel"'

/**
 * `input_response` (DESIGN.md §4): "accept", "decline" or "cancel", or the answers as an object or
 * a string holding one, as JSON or as a Python dict; "" means none. Whether the answers fit the
 * questions is the relay's to check (relay/input-requests.ts), against what the server asked.
 */
function parseInputResponse(value: unknown): { response: unknown } | { problem: string } {
  if (value === undefined || value === null) return { response: undefined }
  if (typeof value === 'string') {
    const text = value.trim().replace(/^```(?:json|python|py)?\s*([\s\S]*?)\s*```$/i, '$1')
    if (text === '') return { response: undefined }
    const action = text.toLowerCase()
    if (action === 'accept' || action === 'decline' || action === 'cancel') return { response: action }
    const read = readLiteral(text)
    if (!('value' in read)) return { problem: literalProblem(INPUT_RESPONSE_MESSAGE, read) }
    return isObject(read.value) ? { response: read.value } : { problem: INPUT_RESPONSE_MESSAGE }
  }
  if (!isObject(value)) return { problem: INPUT_RESPONSE_MESSAGE }
  if (isDeeperThan(value, MAX_LITERAL_DEPTH)) return { problem: TOO_DEEP }
  return { response: value }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * The complaint about a string parameter that did not read as a value: the field's own rule when
 * the string is neither JSON nor a Python literal (and where it goes wrong), else what is wrong
 * with the value it holds.
 */
export function literalProblem(fieldRule: string, read: Extract<LiteralResult, { problem: string }>): string {
  return read.malformed ? `${fieldRule}; the string is neither JSON nor a Python literal: ${read.problem}` : read.problem
}

const FIELDS = {
  user_id: {
    accepted: userId,
    declared: z.string().meta({
      description:
        "The end user's id. In Dify, bind it to {{#sys.user_id#}} (or the signed user id your app issues); never invent or change it.",
    }),
    form: 'form',
  },
  server_id: {
    accepted: serverId,
    declared: z
      .string()
      .optional()
      .meta({ description: 'Optional. One server_id to act on; leave empty for every configured server.' }),
    form: 'llm',
  },
  server_ids: {
    accepted: serverIds,
    declared: z.string().optional().meta({
      description:
        'Optional. Several server_ids, as a comma list or JSON array (for example "notion,docs"); leave empty for every configured server.',
    }),
    form: 'llm',
  },
  force_reauth: {
    accepted: forceReauth,
    declared: z.boolean().optional().meta({
      description:
        'Optional, default false. true issues a fresh sign-in link even when the user is signed in; use it only when the user asks to sign in again or to switch accounts.',
    }),
    form: 'llm',
  },
  confirm_code: {
    accepted: confirmCode,
    declared: z.string().optional().meta({
      description:
        'Optional. The confirmation code the user read on their sign-in page (like XXXXX-XXXXX), when a server is need_auth with pending_confirmation: true. Only the user can give it; never make one up.',
    }),
    form: 'llm',
  },
  tool_ref: {
    accepted: toolRef,
    declared: z.string().meta({
      description: 'The tool to call: its tool_ref exactly as mcp_tool_list returned it ("server_id::tool_name").',
    }),
    form: 'llm',
  },
  input_ref: {
    accepted: z.preprocess(
      blankToUndefined,
      z.string({ error: 'must be a string' }).trim().max(128, 'must be at most 128 characters').optional(),
    ),
    declared: z.string().optional().meta({
      description:
        'Optional. Only to answer a USER_INPUT_REQUIRED or USER_ACTION_REQUIRED result of this tool: its input_ref, exactly as given, with the same tool_ref and input as that call.',
    }),
    form: 'llm',
  },
  input_response: {
    accepted: z.unknown().optional(),
    declared: z.string().optional().meta({
      description:
        'Optional, with input_ref only: the user\'s answers as a JSON object string (field name: value; with several requests, one object per request key), or "decline" or "cancel" if the user does not want to answer, or "accept" once the user finished on the page of a USER_ACTION_REQUIRED result.',
    }),
    form: 'llm',
  },
  id_token: {
    accepted: z
      .string({ error: requiredOr('must be a string') })
      .trim()
      .min(1, 'must not be empty'),
    declared: z.string().meta({
      description: "The user's ID token at the identity_provider, issued to the relay's client there (a JWT).",
    }),
    form: 'form',
  },
  input: {
    accepted: z.unknown().optional(),
    declared: z.string().optional().meta({
      description:
        'The tool\'s arguments as a JSON object string that matches the tool\'s inputSchema from mcp_tool_list, for example {"query": "quarterly report"}. Use {} when the tool takes no arguments.',
    }),
    form: 'llm',
  },
} as const satisfies Record<string, Field>

export type FieldName = keyof typeof FIELDS

function declaredBody<const Names extends readonly FieldName[]>(names: Names) {
  return z.object(Object.fromEntries(names.map((name) => [name, FIELDS[name].declared])) as { [N in Names[number]]: (typeof FIELDS)[N]['declared'] })
}

function acceptedBody<const Names extends readonly FieldName[]>(names: Names) {
  return z.object(Object.fromEntries(names.map((name) => [name, FIELDS[name].accepted])) as { [N in Names[number]]: (typeof FIELDS)[N]['accepted'] })
}

function mergeServerIds(one: string | undefined, many: string[] | undefined): string[] | undefined {
  if (one === undefined) return many
  return [...new Set([one, ...(many ?? [])])]
}

const AUTH_STATUS_FIELDS = ['user_id', 'server_id', 'server_ids', 'force_reauth', 'confirm_code'] as const
const LIST_TOOLS_FIELDS = ['user_id', 'server_id', 'server_ids'] as const
const CALL_TOOL_FIELDS = ['user_id', 'tool_ref', 'input', 'input_ref', 'input_response'] as const
const RESET_FIELDS = ['user_id', 'server_id'] as const
const IDENTITY_FIELDS = ['user_id', 'id_token'] as const

export const authStatusRequest = acceptedBody(AUTH_STATUS_FIELDS).transform((body) => ({
  userId: body.user_id,
  serverIds: mergeServerIds(body.server_id, body.server_ids),
  forceReauth: body.force_reauth,
  confirmCode: body.confirm_code,
}))

export const listToolsRequest = acceptedBody(LIST_TOOLS_FIELDS).transform((body) => ({
  userId: body.user_id,
  serverIds: mergeServerIds(body.server_id, body.server_ids),
}))

export const callToolRequest = acceptedBody(CALL_TOOL_FIELDS)
  // The plugin's older name for `input`; it counts only when `input` is missing or empty.
  .extend({ arguments: z.unknown().optional() })
  .transform((body, ctx) => {
    const useAlias = body.arguments !== undefined && (body.input === undefined || (typeof body.input === 'string' && body.input.trim() === ''))
    const field = useAlias ? 'arguments' : 'input'
    const parsed = parseToolInput(useAlias ? body.arguments : body.input)
    if ('problem' in parsed) {
      ctx.addIssue({ code: 'custom', path: [field], message: parsed.problem })
      return z.NEVER
    }
    const answers = parseInputResponse(body.input_response)
    if ('problem' in answers) {
      ctx.addIssue({ code: 'custom', path: ['input_response'], message: answers.problem })
      return z.NEVER
    }
    if (answers.response !== undefined && body.input_ref === undefined) {
      ctx.addIssue({ code: 'custom', path: ['input_ref'], message: 'is required with input_response: give the input_ref of the call being answered' })
      return z.NEVER
    }
    return {
      userId: body.user_id,
      serverId: body.tool_ref.serverId,
      toolName: body.tool_ref.toolName,
      input: parsed.input,
      inputRef: body.input_ref,
      inputResponse: answers.response,
    }
  })

export const resetRequest = acceptedBody(RESET_FIELDS).transform((body) => ({ userId: body.user_id, serverId: body.server_id }))

export const identityRequest = acceptedBody(IDENTITY_FIELDS).transform((body) => ({ userId: body.user_id, idToken: body.id_token }))

/** The three tool routes as Dify sees them: the OpenAPI document and manifest.yaml are built from this. */
export const TOOL_OPERATIONS = [
  { operationId: 'mcp_auth_status', path: '/tools/auth-status', body: declaredBody(AUTH_STATUS_FIELDS) },
  { operationId: 'mcp_tool_list', path: '/tools/list-tools', body: declaredBody(LIST_TOOLS_FIELDS) },
  { operationId: 'mcp_tool_call', path: '/tools/call-tool', body: declaredBody(CALL_TOOL_FIELDS) },
] as const

/** The operator's reset endpoint (not an LLM tool; listed in manifest.yaml only). */
export const RESET_OPERATION = { path: '/oauth/reset', body: declaredBody(RESET_FIELDS) } as const

/** An application's endpoint for its users' ID tokens (not an LLM tool; listed in manifest.yaml only). */
export const IDENTITY_OPERATION = { path: '/oauth/identity', body: declaredBody(IDENTITY_FIELDS) } as const

export function parameterForm(name: FieldName): ParameterForm {
  return FIELDS[name].form
}

/**
 * Parses a request body; throws RelayError INVALID_INPUT whose message names the first bad field
 * (`user_id: is required`) and never repeats the value.
 */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RelayError('INVALID_INPUT', 'the body must be a JSON object')
  }
  const result = schema.safeParse(body)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const field = issue.path[0]
  throw new RelayError('INVALID_INPUT', field === undefined ? issue.message : `${String(field)}: ${issue.message}`)
}

/** The same fields for the /admin routes (http/admin-schemas.ts). */
export { userId as userIdField, serverId as serverIdField }
