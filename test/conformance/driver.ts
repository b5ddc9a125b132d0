// The client under test for @modelcontextprotocol/conformance (`conformance client --command …`).
//
// The runner starts a scenario's MCP server (and authorization server), then runs this file with
// the server's URL as the last argument, the scenario's name in MCP_CONFORMANCE_SCENARIO and, for
// some scenarios, JSON in MCP_CONFORMANCE_CONTEXT (pre-registered client credentials). It starts
// the relay in this process with that one server configured and then does exactly what Dify and
// a person's browser do, over HTTP only: list-tools; open each login_url and follow the redirects
// through /oauth/start, the scenario's authorization endpoint and back to /oauth/callback;
// list-tools again; call the scenario's tool; on NOT_AUTHORIZED (step-up) open that login_url and
// call again. It exits non-zero when the relay cannot complete that (some scenarios expect it).

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
/** Sign-ins one list-tools or call-tool may ask for before the driver gives up (the relay's own step-up limit is lower). */
const MAX_SIGN_INS = 4

/** The tool each scenario expects to be called, with its arguments; other scenarios: the first tool listed, with `{}`. */
const TOOL_CALLS: Record<string, { name: string; input: Record<string, unknown> }> = {
  tools_call: { name: 'add_numbers', input: { a: 2, b: 3 } },
}

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
}

/** Scenarios whose server expects a service account (grant_type client_credentials), not a user's sign-in. */
const SERVICE_ACCOUNT_SCENARIOS = new Set(['auth/client-credentials-basic', 'auth/client-credentials-jwt'])

/** A bound of our own: the runner kills only its shell when a scenario times out, not this process. */
const DRIVER_TIMEOUT_MS = 35_000

const log = pino({ level: 'debug', base: { component: 'conformance-driver' } }, pino.destination({ dest: 2, sync: true }))

async function main(): Promise<void> {
  const serverUrl = process.argv.at(-1)
  if (!serverUrl || !URL.canParse(serverUrl)) throw new Error(`expected the MCP server URL as the last argument, got ${serverUrl}`)
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? ''
  const context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || '{}') as ScenarioContext
  log.info({ scenario, serverUrl }, 'scenario started')

  const relay = await startRelay(serverUrl, context, SERVICE_ACCOUNT_SCENARIOS.has(scenario))
  try {
    // Enterprise-managed authorization: the application in front of Dify hands over the user's
    // ID token (POST /oauth/identity); no browser sign-in follows.
    if (context.idp_id_token) await relay.post('/oauth/identity', { user_id: USER_ID, id_token: context.idp_id_token })
    let listed = await relay.post('/tools/list-tools', { user_id: USER_ID })
    for (let signIns = 0; listed.auth_required.length > 0; signIns++) {
      if (signIns === MAX_SIGN_INS) throw new Error(`still asked to sign in after ${MAX_SIGN_INS} sign-ins`)
      for (const entry of listed.auth_required) await signIn(entry.login_url)
      listed = await relay.post('/tools/list-tools', { user_id: USER_ID })
    }
    if (listed.errors.length > 0) throw new Error(`list-tools reported errors: ${JSON.stringify(listed.errors)}`)

    const call = TOOL_CALLS[scenario] ?? (listed.tools[0] ? { name: listed.tools[0].name, input: {} } : undefined)
    if (!call) {
      log.info({ tools: listed.tools.length }, 'no tool to call')
      return
    }
    if (!listed.tools.some((tool: { name: string }) => tool.name === call.name)) throw new Error(`the server did not list ${call.name}`)
    for (let signIns = 0; ; signIns++) {
      const answer = await relay.post('/tools/call-tool', { user_id: USER_ID, tool_ref: `${SERVER_ID}::${call.name}`, input: call.input })
      if (answer.ok === true) {
        if (answer.result.isError) throw new Error(`${call.name} answered an error: ${JSON.stringify(answer.result.content)}`)
        log.info({ tool: call.name, content: answer.result.content }, 'tool called')
        return
      }
      if (answer.error_code !== 'NOT_AUTHORIZED' || signIns === MAX_SIGN_INS) throw new Error(`call-tool failed: ${JSON.stringify(answer)}`)
      // A step-up: the server wants more scopes for this call.
      await signIn(answer.login_url)
    }
  } finally {
    await relay.close()
  }
}

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
  return {
    // Dify's HTTP request: a JSON body and the API key; every answer is expected to be HTTP 200.
    async post(path: string, body: object): Promise<any> {
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
    },
    close: () => app.close(),
  }
}

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
