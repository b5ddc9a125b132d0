// The client under test for @modelcontextprotocol/conformance (`conformance client --command …`).
//
// The runner starts a scenario's MCP server (and authorization server), then runs this file with
// the server's URL as the last argument, the scenario's name in MCP_CONFORMANCE_SCENARIO and, for
// some scenarios, JSON in MCP_CONFORMANCE_CONTEXT (pre-registered client credentials, the tool
// calls to make). It starts the relay in this process with that one server configured and then
// does exactly what Dify, its model and a person's browser do, over HTTP only: list-tools; open
// each login_url and follow the redirects through /oauth/start, the scenario's authorization
// endpoint and back to /oauth/callback; list-tools again; call the scenario's tools; on
// NOT_AUTHORIZED (step-up) open that login_url and call again; on USER_INPUT_REQUIRED answer the
// questions as the user would and call again with input_ref and input_response. It exits non-zero
// when the relay cannot complete that (some scenarios expect it).
//
// The relay negotiates the MCP revision itself (`protocol: auto`): the wire the runner asks for
// (MCP_CONFORMANCE_PROTOCOL_VERSION) is the scenario server's business, not the driver's.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { buildApp } from '../../src/app.ts'
import { loadConfig } from '../../src/config/load-config.ts'
import { createRelay } from '../../src/relay/create-relay.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { freePort } from '../support/free-port.ts'

const SERVER_ID = 'conformance'
const USER_ID = 'conformance-user'
const API_KEY = randomBytes(24).toString('base64url')
/** The basic-cimd scenario expects this client_id; its authorization server never fetches it. */
const CLIENT_METADATA_URL = 'https://conformance-test.local/client-metadata.json'
/** Sign-ins or question rounds one call may take before the driver gives up (the relay's own limits are lower). */
const MAX_ROUNDS = 6

interface ScenarioContext {
  client_id?: string
  client_secret?: string
  /** The client-credentials scenarios: a service account's key (PKCS #8 PEM) and its JWS algorithm. */
  private_key_pem?: string
  signing_algorithm?: string
  /** The enterprise scenario (SEP-990): the identity provider, the relay's client there, and the user's ID token. */
  idp_issuer?: string
  idp_client_id?: string
  idp_token_endpoint?: string
  idp_id_token?: string
  /** The workload identity scenario: the workload's JWT (and ones the server refuses). */
  valid_jwt?: string
  /** http-custom-headers: the calls to make, with the arguments whose headers it checks. */
  toolCalls?: ToolCall[]
}

interface ToolCall {
  name: string
  arguments: Record<string, unknown>
}

interface ListedTool {
  name: string
  inputSchema: Record<string, unknown>
}

/** Scenarios whose server expects a service account (grant_type client_credentials), not a user's sign-in. */
const SERVICE_ACCOUNT_SCENARIOS = new Set(['auth/client-credentials-basic', 'auth/client-credentials-jwt'])

/**
 * What the model calls in each scenario, once the tools are listed. Any other scenario: the first
 * tool listed, with `{}` (the auth scenarios only check that a tool call arrives with the token).
 */
const PLANS: Record<string, (relay: Relay, tools: ListedTool[], context: ScenarioContext) => Promise<void>> = {
  tools_call: (relay) => relay.callTool('add_numbers', { a: 2, b: 3 }),
  // Its server declares no tools, so listing sends nothing past the probe, but it answers any
  // call: one shows the `_meta` and capabilities of a request other than `server/discover`.
  'request-metadata': (relay) => relay.callTool('any_tool', {}),
  // The scenario's server answers tools/list only: it checks that listing never fetches the
  // network `$ref` in a tool's schema.
  'json-schema-ref-no-deref': async () => undefined,
  // The model hands back the schema it was shown: the scenario checks every 2020-12 keyword survived list-tools.
  'json-schema-2020-12-preservation': (relay, tools) => relay.callTool('json_schema_echo', { schema: toolNamed(tools, 'json_schema_2020_12_tool').inputSchema }),
  // Every tool the relay lists is one a model may call: the scenario fails if any of them is a
  // tool whose `x-mcp-header` declarations are invalid (SEP-2243: left out of the list).
  'http-invalid-tool-headers': async (relay, tools) => {
    for (const tool of tools) await relay.callTool(tool.name, {})
  },
  'http-custom-headers': async (relay, _tools, context) => {
    for (const call of context.toolCalls ?? []) await relay.callTool(call.name, call.arguments)
  },
  // SEP-2322: a question left open while the model calls another tool (which must carry none of
  // its state), then answered; a question without requestState; a result without resultType.
  'sep-2322-client-request-state': async (relay) => {
    const asked = await relay.callToolOnce('test_mrtr_echo_state', {})
    if (asked.error_code !== 'USER_INPUT_REQUIRED') throw new Error(`expected a question, got ${JSON.stringify(asked)}`)
    await relay.callTool('test_mrtr_unrelated', {})
    await relay.callTool('test_mrtr_echo_state', {}, asked)
    await relay.callTool('test_mrtr_no_state', {})
    await relay.callTool('test_mrtr_no_result_type', {})
  },
}

const log = pino({ level: 'debug', base: { component: 'conformance-driver' } }, pino.destination({ dest: 2, sync: true }))

async function main(): Promise<void> {
  const serverUrl = process.argv.at(-1)
  if (!serverUrl || !URL.canParse(serverUrl)) throw new Error(`expected the MCP server URL as the last argument, got ${serverUrl}`)
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? ''
  const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || '{}') as ScenarioContext
  log.info({ scenario, serverUrl, wire: process.env.MCP_CONFORMANCE_PROTOCOL_VERSION }, 'scenario started')

  const relay = await startRelay(serverUrl, context, SERVICE_ACCOUNT_SCENARIOS.has(scenario))
  try {
    // Enterprise-managed authorization: the application in front of Dify hands over the user's
    // ID token (POST /oauth/identity); no browser sign-in follows.
    if (context.idp_id_token) await relay.post('/oauth/identity', { user_id: USER_ID, id_token: context.idp_id_token })
    let listed = await relay.post('/tools/list-tools', { user_id: USER_ID })
    for (let signIns = 0; listed.auth_required.length > 0; signIns++) {
      if (signIns === MAX_ROUNDS) throw new Error(`still asked to sign in after ${MAX_ROUNDS} sign-ins`)
      for (const entry of listed.auth_required) await signIn(entry.login_url)
      listed = await relay.post('/tools/list-tools', { user_id: USER_ID })
    }
    if (listed.errors.length > 0) throw new Error(`list-tools reported errors: ${JSON.stringify(listed.errors)}`)
    const tools = listed.tools as ListedTool[]
    const plan = PLANS[scenario]
    if (plan) await plan(relay, tools, context)
    else if (tools[0]) await relay.callTool(tools[0].name, {})
    else log.info({}, 'no tool to call')
  } finally {
    await relay.close()
  }
}

type Relay = Awaited<ReturnType<typeof startRelay>>

/** The browser's part: login link → authorization endpoint → the relay's callback page. */
async function signIn(loginUrl: string): Promise<void> {
  const page = await signInThroughBrowser(loginUrl, USER_ID, { timeoutMs: 10_000 })
  if (page.status !== 200) throw new Error(`the callback page answered ${page.status}: ${page.html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').slice(0, 400)}`)
  log.info({}, 'signed in')
}

async function startRelay(serverUrl: string, context: ScenarioContext, serviceAccount: boolean) {
  const port = await freePort()
  const assertionFile = context.valid_jwt ? join(mkdtempSync(join(tmpdir(), 'conformance-wif-')), 'token') : undefined
  if (assertionFile) writeFileSync(assertionFile, `${context.valid_jwt}\n`)
  const grantType = context.idp_issuer ? 'enterprise' : assertionFile ? 'workload_identity' : serviceAccount ? 'client_credentials' : undefined
  const config = loadConfig({
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_BASE_URL: `http://127.0.0.1:${port}`,
    RELAY_API_KEYS: API_KEY,
    MCP_SERVERS_JSON: JSON.stringify({
      ...(context.idp_issuer
        ? { identity_provider: { issuer: context.idp_issuer, client_id: context.idp_client_id, token_endpoint: context.idp_token_endpoint } }
        : {}),
      servers: [
        {
          server_id: SERVER_ID,
          description: 'Conformance scenario server',
          mcp_url: serverUrl,
          ...(context.client_id ? { client_id: context.client_id } : {}),
          ...(context.client_secret ? { client_secret: context.client_secret } : {}),
          ...(grantType ? { grant_type: grantType } : {}),
          ...(assertionFile ? { assertion_file: assertionFile } : {}),
          ...(context.private_key_pem ? { client_private_key: context.private_key_pem } : {}),
          ...(context.signing_algorithm ? { client_signing_alg: context.signing_algorithm } : {}),
        },
      ],
    }),
    STORE_URL: 'memory://',
    // The scenario's authorization server listens on another localhost port than the MCP server.
    OAUTH_TRUSTED_HOSTS: 'localhost',
    OAUTH_CLIENT_METADATA_URL: CLIENT_METADATA_URL,
    UPSTREAM_TIMEOUT_SECONDS: '10',
    LOG_LEVEL: 'debug',
  })
  const { relay, signInKeys } = await createRelay(config, { logger: log })
  const app = await buildApp({ config, relay, signInKeys, logger: false })
  await app.listen({ port, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${port}`

  // Dify's HTTP request: a JSON body and the API key; every answer is expected to be HTTP 200.
  async function post(path: string, body: object): Promise<any> {
    const response = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(25_000),
    })
    const answer = await response.json()
    log.info({ path, status: response.status, answer }, 'relay answered')
    if (response.status !== 200) throw new Error(`${path} answered HTTP ${response.status}: ${JSON.stringify(answer)}`)
    return answer
  }

  /** One call-tool, as the model makes it; `question` is the USER_INPUT_REQUIRED answer it replies to. */
  function callToolOnce(name: string, input: Record<string, unknown>, question?: any): Promise<any> {
    const reply = question ? { input_ref: question.input_ref, input_response: answersTo(question.input_requests) } : {}
    return post('/tools/call-tool', { user_id: USER_ID, tool_ref: `${SERVER_ID}::${name}`, input, ...reply })
  }

  /** A call carried through to its result: sign-ins (step-up) and the user's answers as they come. */
  async function callTool(name: string, input: Record<string, unknown>, question?: any): Promise<void> {
    let answer = await callToolOnce(name, input, question)
    for (let round = 0; answer.ok !== true; round++) {
      if (round === MAX_ROUNDS) throw new Error(`call-tool still not done after ${MAX_ROUNDS} rounds: ${JSON.stringify(answer)}`)
      if (answer.error_code === 'NOT_AUTHORIZED') {
        await signIn(answer.login_url) // a step-up: the server wants more scopes for this call
        answer = await callToolOnce(name, input)
      } else if (answer.error_code === 'USER_INPUT_REQUIRED') {
        answer = await callToolOnce(name, input, answer)
      } else {
        throw new Error(`call-tool failed: ${JSON.stringify(answer)}`)
      }
    }
    if (answer.result.isError) throw new Error(`${name} answered an error: ${JSON.stringify(answer.result.content)}`)
    log.info({ tool: name, content: answer.result.content }, 'tool called')
  }

  return { post, callTool, callToolOnce, close: () => app.close() }
}

/** The user's answers to the relay's `input_requests` (DESIGN.md §4): each field's default, else a plausible value. */
function answersTo(requests: Array<{ key: string; fields: Record<string, { type: string; default?: unknown; enum?: unknown[]; minimum?: number }> }>): unknown {
  const answers = requests.map((request) =>
    Object.fromEntries(
      Object.entries(request.fields).map(([name, field]) => {
        if (field.default !== undefined) return [name, field.default]
        if (field.enum?.length) return [name, field.enum[0]]
        const byType: Record<string, unknown> = { boolean: true, number: field.minimum ?? 1, integer: field.minimum ?? 1, string: 'yes', array: [] }
        return [name, byType[field.type]]
      }),
    ),
  )
  return answers.length === 1 ? answers[0] : Object.fromEntries(requests.map((request, i) => [request.key, answers[i]]))
}

function toolNamed(tools: ListedTool[], name: string): ListedTool {
  const tool = tools.find((listed) => listed.name === name)
  if (!tool) throw new Error(`the relay did not list ${name}`)
  return tool
}

/**
 * A bound of our own: the runner kills only its shell when a scenario times out, not this process.
 * A little past the runner's own bound (conformance.test.ts, DRIVER_TIMEOUT_MS), so its verdict comes first.
 */
const DRIVER_TIMEOUT_MS = 65_000

setTimeout(() => {
  process.stderr.write(`conformance driver: gave up after ${DRIVER_TIMEOUT_MS} ms\n`)
  process.exit(2)
}, DRIVER_TIMEOUT_MS).unref()

main().then(
  () => {
    log.info({}, 'scenario completed')
    log.flush()
    process.exit(0)
  },
  (error: unknown) => {
    log.error({ err: error }, 'scenario failed')
    log.flush()
    process.stderr.write(`conformance driver: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
