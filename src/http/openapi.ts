import { z } from 'zod'
import packageJson from '../../package.json' with { type: 'json' }
import { TOOL_OPERATIONS } from './schemas.ts'

/**
 * The OpenAPI document Dify imports as a Custom Tool. Dify's importer (api/core/tools/utils/parser.py)
 * makes one tool per operation, named by operationId, described by `description`, with one
 * parameter per top-level body property, typed only string/number/boolean, and calls
 * `servers[0].url` + path. So: three POST operations, flat bodies, no $ref.
 */

type OperationId = (typeof TOOL_OPERATIONS)[number]['operationId']

const loginUrl = z.string().meta({ description: 'Show it to the user as a link to sign in; then wait for them.' })
const serverError = z.object({ server_id: z.string(), error: z.string() })
const pendingConfirmation = z
  .literal(true)
  .meta({ description: 'Signed in in the browser, waiting for the confirmation code the user saw there: ask the user for it (no login_url then).' })

const retryAfterSeconds = z.number().int().positive().meta({ description: 'With STORE_UNAVAILABLE or RATE_LIMITED: wait at least this long before calling again.' })
/** A relay-side transient fault, which the tool routes answer 200 (DESIGN.md §4). */
const relayFault = z.object({
  ok: z.literal(false),
  error_code: z.enum(['STORE_UNAVAILABLE', 'RATE_LIMITED']),
  retry_after_seconds: retryAfterSeconds,
  message: z.string(),
})

const authStatusAnswer = z.object({
  all_authorized: z.boolean(),
  authorized_server_ids: z.array(z.string()),
  need_auth_server_ids: z.array(z.string()),
  servers: z.array(
    z.object({
      server_id: z.string(),
      description: z.string(),
      status: z.enum(['authorized', 'need_auth', 'no_auth_required', 'error']),
      login_url: loginUrl.optional(),
      pending_confirmation: pendingConfirmation.optional(),
      message: z.string(),
    }),
  ),
  errors: z.array(serverError),
  usage: z.string(),
})

const listToolsAnswer = z.object({
  tools: z.array(
    z.object({
      tool_ref: z.string(),
      name: z.string(),
      title: z.string().optional(),
      description: z.string(),
      inputSchema: z.record(z.string(), z.unknown()),
      outputSchema: z.record(z.string(), z.unknown()).optional(),
      annotations: z
        .record(z.string(), z.unknown())
        .optional()
        .meta({ description: 'What the server says of the tool: readOnlyHint, destructiveHint, idempotentHint, openWorldHint.' }),
      server_id: z.string(),
      server_description: z.string(),
    }),
  ),
  auth_required: z.array(
    z.object({
      server_id: z.string(),
      status: z.literal('need_auth'),
      login_url: loginUrl.optional(),
      pending_confirmation: pendingConfirmation.optional(),
      message: z.string(),
    }),
  ),
  errors: z.array(serverError),
  servers: z.array(z.object({ server_id: z.string(), source: z.enum(['cache', 'upstream']), tool_count: z.number().int() })),
  usage: z.string(),
})

const RESPONSES: Record<OperationId, z.ZodType> = {
  mcp_auth_status: z.union([authStatusAnswer, relayFault]),
  mcp_tool_list: z.union([listToolsAnswer, relayFault]),
  mcp_tool_call: z.object({
    ok: z.boolean(),
    tool_ref: z.string().optional(),
    result: z
      .object({ content: z.array(z.unknown()), structuredContent: z.unknown().optional(), isError: z.boolean() })
      .optional(),
    error_code: z
      .enum(['NOT_AUTHORIZED', 'USER_ACTION_REQUIRED', 'USER_INPUT_REQUIRED', 'UPSTREAM_ERROR', 'TIMEOUT', 'UNKNOWN_TOOL', 'STORE_UNAVAILABLE', 'RATE_LIMITED'])
      .optional(),
    retry_after_seconds: retryAfterSeconds.optional(),
    status: z.enum(['need_auth', 'need_user_action', 'need_user_input']).optional(),
    server_id: z.string().optional(),
    login_url: loginUrl.optional(),
    action_url: z.string().optional().meta({ description: 'Show it to the user as a link to a page they must finish first; then wait for them.' }),
    pending_confirmation: pendingConfirmation.optional(),
    input_ref: z.string().optional().meta({ description: 'Pass it back, with input_response, to continue this call once the user has answered.' }),
    input_requests: z
      .array(
        z.object({
          key: z.string(),
          kind: z.enum(['form', 'url']),
          message: z.string(),
          fields: z.record(z.string(), z.unknown()).optional(),
          required: z.array(z.string()).optional(),
          url: z.string().optional(),
        }),
      )
      .optional()
      .meta({ description: 'The questions to ask the user in the chat: one form (its fields) or page (its url) each.' }),
    message: z.string().optional(),
  }),
}

const RELAY_FAULT_TEXT =
  'An answer with ok: false and error_code STORE_UNAVAILABLE or RATE_LIMITED means the relay itself is briefly unavailable: tell the user its message, and call again only after retry_after_seconds.'

/** What each tool is for, written for the model that decides when to call it. */
export const OPERATION_TEXT: Record<OperationId, { summary: string; description: string }> = {
  mcp_auth_status: {
    summary: 'Check which MCP servers the user is signed in to',
    description:
      'Check whether the current user is signed in to the connected MCP servers. Call it before using MCP tools, and again after the user says they have signed in. ' +
      'Returns all_authorized and, per server, a status: authorized, no_auth_required, need_auth (with a login_url) or error (with a message). ' +
      'For each login_url: show it to the user as a clickable link, ask them to sign in in their browser, and wait for them to say they are done; never open it yourself or change it. ' +
      'A need_auth server with pending_confirmation: true has no login_url: ask the user for the confirmation code their sign-in page showed, then call this again with confirm_code (never invent one). ' +
      'Set force_reauth to true only when the user asks to sign in again or to switch accounts. ' +
      RELAY_FAULT_TEXT,
  },
  mcp_tool_list: {
    summary: 'List the MCP tools the user can call',
    description:
      'List the tools available to the current user on the connected MCP servers. Call it before mcp_tool_call to learn each tool\'s tool_ref and inputSchema. ' +
      'Returns tools[] (tool_ref, name, title, description, inputSchema, outputSchema, annotations such as readOnlyHint and destructiveHint, server_id), auth_required[] (servers that need sign-in, each with a login_url) and errors[]. ' +
      'For each login_url: show it to the user as a clickable link, wait for them to sign in, then call this again. An entry with pending_confirmation: true needs the confirmation code: see mcp_auth_status. ' +
      RELAY_FAULT_TEXT,
  },
  mcp_tool_call: {
    summary: 'Call one MCP tool for the user',
    description:
      'Call one MCP tool for the current user. tool_ref is the exact tool_ref from mcp_tool_list; input is a JSON object string that matches that tool\'s inputSchema. ' +
      'Returns ok: true with the tool\'s result (content, structuredContent, isError), or ok: false with an error_code. ' +
      'NOT_AUTHORIZED comes with a login_url: show it to the user as a clickable link, wait for them to sign in, then call again with the same arguments (with pending_confirmation: true instead, get the confirmation code through mcp_auth_status). ' +
      'USER_ACTION_REQUIRED comes with an action_url: show it to the user as a clickable link, wait for them to finish on that page, then call again with the same arguments (and, when it has an input_ref, that input_ref with input_response "accept"). ' +
      'USER_INPUT_REQUIRED comes with input_requests: ask the user those questions in the chat, then call again with the same tool_ref and input plus input_ref and input_response (the answers as a JSON object; with several requests, one object per request key), or input_response "decline" if the user does not want to answer. ' +
      'Large images and files come as a url with omitted: true; show an image as a Markdown image and a file as a link. ' +
      'UNKNOWN_TOOL: call mcp_tool_list again and use a tool_ref from it. UPSTREAM_ERROR or TIMEOUT: tell the user what failed; retry at most once. ' +
      'STORE_UNAVAILABLE or RATE_LIMITED: the relay itself is briefly unavailable: tell the user its message, and call again only after retry_after_seconds.',
  },
}

/** The body schema as Dify must see it: flat properties, `required`, no `additionalProperties` (unknown fields are ignored, not refused). */
function flatBodySchema(body: z.ZodType): Record<string, unknown> {
  const { additionalProperties: _ignored, ...schema } = z.toJSONSchema(body, { target: 'openapi-3.0' }) as Record<string, unknown>
  return schema
}

function responseSchema(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' }) as Record<string, unknown>
}

const ERROR_RESPONSE = {
  description: 'The request is wrong (400, 401, 413) or the relay cannot serve it (500, 503)',
  content: {
    'application/json': {
      schema: responseSchema(z.object({ error: z.object({ code: z.string(), message: z.string() }) })),
    },
  },
}

// Everything but the server URL is fixed: build it once at module load.
const PATHS = Object.fromEntries(
  TOOL_OPERATIONS.map((operation) => [
    operation.path,
    {
      post: {
        operationId: operation.operationId,
        ...OPERATION_TEXT[operation.operationId],
        security: [{ bearerAuth: [] }],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: flatBodySchema(operation.body) } },
        },
        responses: {
          '200': {
            description: 'The answer, including outcomes such as "sign-in needed" (see the description)',
            content: { 'application/json': { schema: responseSchema(RESPONSES[operation.operationId]) } },
          },
          default: ERROR_RESPONSE,
        },
      },
    },
  ]),
)

/** `toolsBaseUrl`: TOOLS_BASE_URL, where Dify calls the tool routes (DESIGN.md §3). */
export function createOpenApiDocument(toolsBaseUrl: string): Readonly<Record<string, unknown>> {
  return Object.freeze({
    openapi: '3.0.3',
    info: {
      title: 'MCP Auth Relay',
      version: packageJson.version,
      description:
        'Use tools on OAuth-protected MCP servers, with a separate sign-in for every user. Check sign-in with mcp_auth_status, find tools with mcp_tool_list, call them with mcp_tool_call.',
    },
    servers: [{ url: toolsBaseUrl }],
    paths: PATHS,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          description: 'One of RELAY_API_KEYS, as "Bearer <key>"; "Basic <key>" and the bare key (the prefixes of Dify\'s API-key credential) work too',
        },
      },
    },
  })
}
