import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../../src/app.ts'
import { loadConfig, type RelayConfig } from '../../src/config/load-config.ts'
import { RelayError } from '../../src/errors.ts'
import { signUserId } from '../../src/http/identity.ts'
import type { Caller, RelayService } from '../../src/relay/types.ts'

export const ACME_KEY = 'acme-key-0123456789abcdef'
export const GLOBEX_KEY = 'globex-key-0123456789abcdef'
export const USER_SECRET = 'a-user-secret-that-is-at-least-32-characters'
/** The confirmation form's CSRF key of every app makeApp builds (createRelay derives the real ones). */
export const SIGN_IN_KEY = Buffer.alloc(32, 7)

export function makeConfig(environment: Record<string, string> = {}): RelayConfig {
  return loadConfig({
    MCP_SERVERS_JSON: JSON.stringify({
      servers: [
        { server_id: 'notion', description: 'Notion workspace', mcp_url: 'https://mcp.notion.com/mcp' },
        { server_id: 'docs', mcp_url: 'https://docs.example.com/mcp' },
      ],
    }),
    RELAY_API_KEYS: `acme:${ACME_KEY},globex:${GLOBEX_KEY}`,
    STORE_URL: 'memory://',
    PUBLIC_BASE_URL: 'https://relay.example.com/base',
    LOG_LEVEL: 'silent',
    ...environment,
  })
}

export interface RecordedCall {
  method: keyof RelayService
  caller?: Caller
  request?: unknown
}

/**
 * A RelayService that records what the HTTP layer parsed and answers canned domain values. It
 * stands in for the relay only: these tests cover parsing, identity and status mapping.
 */
export function createRecordingRelay(config: RelayConfig, overrides: Partial<RelayService> = {}) {
  const calls: RecordedCall[] = []
  let closed = 0
  const checkServers = (serverIds: readonly string[] | undefined) => {
    for (const serverId of serverIds ?? []) {
      if (!config.servers.has(serverId)) throw new RelayError('UNKNOWN_SERVER', `server_id "${serverId}" is not configured`)
    }
  }
  const relay: RelayService = {
    async authStatus(caller, request) {
      calls.push({ method: 'authStatus', caller, request })
      checkServers(request.serverIds)
      return {
        all_authorized: false,
        authorized_server_ids: ['docs'],
        need_auth_server_ids: ['notion'],
        servers: [
          { server_id: 'notion', description: 'Notion workspace', status: 'need_auth', login_url: `${config.publicBaseUrl}/oauth/start/t1`, message: 'sign in' },
          { server_id: 'docs', description: '', status: 'authorized', message: 'ok' },
        ],
        errors: [],
        usage: 'show login_url',
      }
    },
    async listTools(caller, request) {
      calls.push({ method: 'listTools', caller, request })
      checkServers(request.serverIds)
      return { tools: [], auth_required: [], errors: [], servers: [], usage: '' }
    },
    async callTool(caller, request) {
      calls.push({ method: 'callTool', caller, request })
      checkServers([request.serverId])
      return { ok: true, tool_ref: `${request.serverId}::${request.toolName}`, result: { content: [], isError: false } }
    },
    async reset(caller, request) {
      calls.push({ method: 'reset', caller, request })
      return { user_id: caller.userId, deleted_server_ids: request.serverId ? [request.serverId] : ['notion', 'docs'], servers: [], message: 'done' }
    },
    async submitIdentity(caller, request) {
      calls.push({ method: 'submitIdentity', caller, request })
      return { ok: true, expires_at: '2030-01-01T00:00:00.000Z' }
    },
    async listConnections(admin, request) {
      calls.push({ method: 'listConnections', request: { admin, ...request } })
      return { connections: [], next_cursor: null }
    },
    async adminReset(admin, request) {
      calls.push({ method: 'adminReset', request: { admin, ...request } })
      return { user_id: request.userId, deleted_server_ids: [], servers: [], message: 'done' }
    },
    async describeSignIn(ticketId) {
      calls.push({ method: 'describeSignIn', request: ticketId })
      return ticketId === 'good'
        ? { kind: 'confirm', serverName: 'Notion workspace', tenant: 'acme', userId: 'u-42' }
        : { kind: 'invalid', message: 'This sign-in link has expired or was already used.' }
    },
    async startSignIn(ticketId, browser) {
      calls.push({ method: 'startSignIn', request: { ticketId, browser } })
      if (!browser.csrfValid) return { kind: 'refused', message: 'This confirmation was not sent from the sign-in page.' }
      return ticketId === 'good'
        ? { kind: 'redirect', url: 'https://auth.example.com/authorize?client_id=relay&state=s1' }
        : { kind: 'invalid', message: 'This sign-in link has expired or was already used.' }
    },
    async completeSignIn(callbackUrl, browserHash) {
      calls.push({ method: 'completeSignIn', request: { url: callbackUrl.href, browserHash } })
      return { kind: 'connected', serverId: 'notion', description: 'Notion workspace' }
    },
    async readFile(id) {
      calls.push({ method: 'readFile', request: id })
      return id === 'kept' ? { mimeType: 'image/png', bytes: Buffer.from('png bytes') } : undefined
    },
    clientMetadataDocument() {
      return { client_id: `${config.publicBaseUrl}/oauth/client-metadata.json`, client_name: 'MCP Auth Relay' }
    },
    async checkReady() {},
    async close() {
      closed += 1
    },
    ...overrides,
  }
  return { relay, calls, closedCount: () => closed }
}

export async function makeApp(
  options: { environment?: Record<string, string>; relay?: Partial<RelayService>; deps?: Partial<AppDeps> } = {},
): Promise<{ app: FastifyInstance; calls: RecordedCall[]; config: RelayConfig; closedCount: () => number }> {
  const config = makeConfig(options.environment)
  const { relay, calls, closedCount } = createRecordingRelay(config, options.relay)
  const app = await buildApp({ config, relay, signInKeys: [SIGN_IN_KEY], logger: false, ...options.deps })
  return { app, calls, config, closedCount }
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` })

/** A user id signed with the secret of the logging test ('x' × 32), valid for ten minutes. */
export function signUserIdForTest(id: string): string {
  return signUserId('x'.repeat(32), id, 600)
}
