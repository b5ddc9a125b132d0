import type { KeptFile } from '../store/files.ts'
import type { InputRequestEntry } from './input-requests.ts'

export type { KeptFile } from '../store/files.ts'

/**
 * What the HTTP layer sees of the relay: the three tool operations, reset and the sign-in steps,
 * with the plugin's response field names (DESIGN.md §4). The relay holds no HTTP; routes hold no logic.
 */

/** Who is asking: the tenant comes from the API key's name, the user from `user_id`. */
export interface Caller {
  readonly tenant: string
  readonly userId: string
}

export type ServerStatus = 'authorized' | 'need_auth' | 'no_auth_required' | 'error'

export interface ServerStatusEntry {
  server_id: string
  description: string
  status: ServerStatus
  /** How an `authorized` server is reached: the user's own sign-in, the server's service account, or the user's enterprise identity. */
  auth?: 'user' | 'service_account' | 'enterprise'
  login_url?: string
  /** SIGN_IN_CONFIRMATION=code: signed in in the browser, waiting for the one-time code (no login_url then). */
  pending_confirmation?: true
  message: string
}

export interface ServerError {
  server_id: string
  error: string
}

export interface AuthStatusResult {
  all_authorized: boolean
  authorized_server_ids: string[]
  need_auth_server_ids: string[]
  servers: ServerStatusEntry[]
  errors: ServerError[]
  usage: string
}

export interface ToolEntry {
  tool_ref: string
  name: string
  /** What the server says of the tool, where it says it (MCP 2025-11-25 "Tool"). */
  title?: string
  description: string
  inputSchema: unknown
  outputSchema?: unknown
  annotations?: unknown
  server_id: string
  server_description: string
}

export interface AuthRequiredEntry {
  server_id: string
  status: 'need_auth'
  login_url?: string
  pending_confirmation?: true
  message: string
}

export interface ListToolsResult {
  tools: ToolEntry[]
  auth_required: AuthRequiredEntry[]
  errors: ServerError[]
  servers: Array<{ server_id: string; source: 'cache' | 'upstream'; tool_count: number }>
  usage: string
}

export type CallToolResult =
  | { ok: true; tool_ref: string; result: { content: unknown[]; structuredContent?: unknown; isError: boolean } }
  | { ok: false; error_code: 'NOT_AUTHORIZED'; status: 'need_auth'; server_id: string; login_url?: string; pending_confirmation?: true; message: string }
  | { ok: false; error_code: 'UPSTREAM_ERROR' | 'TIMEOUT' | 'UNKNOWN_TOOL'; tool_ref: string; message: string }
  | {
      ok: false
      error_code: 'USER_ACTION_REQUIRED'
      status: 'need_user_action'
      server_id: string
      tool_ref: string
      action_url: string
      /** A 2026-07-28 server's URL request (SEP-2322): the call continues with it once the page is done. */
      input_ref?: string
      message: string
    }
  | {
      ok: false
      error_code: 'USER_INPUT_REQUIRED'
      status: 'need_user_input'
      server_id: string
      tool_ref: string
      input_ref: string
      input_requests: InputRequestEntry[]
      message: string
    }

export interface ResetResult {
  user_id: string
  deleted_server_ids: string[]
  /** One entry per deleted grant: whether its authorization server revoked it (RFC 7009, DESIGN.md §4). */
  servers: Array<{ server_id: string; revoked: true | false | 'unsupported' }>
  /** A reset of every server deleted the user's identity at the enterprise identity provider: whether the provider revoked it. */
  identity_provider?: { revoked: true | false | 'unsupported' }
  message: string
}

/** Who is asking on an /admin route: the position of their key in RELAY_ADMIN_KEYS (1-based), for the audit line. */
export interface AdminCaller {
  readonly adminKey: number
}

export interface ConnectionsRequest {
  readonly tenant: string | undefined
  readonly userId: string | undefined
  readonly serverId: string | undefined
  readonly limit: number
  /** A previous answer's next_cursor. */
  readonly cursor: string | undefined
}

export interface ConnectionsResult {
  connections: Array<{
    tenant: string
    user_id: string
    server_id: string
    obtained_at: string
    expires_at: string | null
    scope: string | null
    refreshable: boolean
  }>
  next_cursor: string | null
}

/** What the confirmation page names (DESIGN.md §6): which server, for which workspace and user. */
export type DescribeSignInResult =
  | { kind: 'confirm'; serverName: string; tenant: string; userId: string }
  | { kind: 'invalid'; message: string }

/** What the HTTP layer found of the browser that pressed Continue. */
export type BrowserProof =
  | { readonly csrfValid: false }
  /** The form's CSRF token matched the browser's cookie; `browserHash` is that cookie's SHA-256 (base64url). */
  | { readonly csrfValid: true; readonly browserHash: string }

export type StartSignInResult =
  | { kind: 'redirect'; url: string }
  | { kind: 'invalid'; message: string }
  /** The CSRF check failed: nothing was used up. */
  | { kind: 'refused'; message: string }

export type CompleteSignInResult =
  /** `confirmationCode` with SIGN_IN_CONFIRMATION=code: the page shows it; the token waits for it. */
  | { kind: 'connected'; serverId: string; description: string; confirmationCode?: string }
  | { kind: 'failed'; status: 400 | 502; message: string }

export interface RelayService {
  /** `serverIds` undefined means every configured server; unknown ids throw RelayError UNKNOWN_SERVER. */
  authStatus(
    caller: Caller,
    request: { serverIds: string[] | undefined; forceReauth: boolean; confirmCode?: string | undefined },
  ): Promise<AuthStatusResult>
  listTools(caller: Caller, request: { serverIds: string[] | undefined }): Promise<ListToolsResult>
  /** `toolRef` is `server_id::tool_name`, split at the first `::` (already checked by the route). */
  /** `inputRef` and `inputResponse` continue a call that asked the user questions (DESIGN.md §4). */
  callTool(
    caller: Caller,
    request: { serverId: string; toolName: string; input: Record<string, unknown>; inputRef?: string | undefined; inputResponse?: unknown },
  ): Promise<CallToolResult>
  reset(caller: Caller, request: { serverId: string | undefined }): Promise<ResetResult>
  /**
   * POST /oauth/identity: keeps the user's ID token at the identity provider for enterprise
   * servers. Throws RelayError INVALID_INPUT (the token does not fit) or NOT_FOUND (no provider).
   */
  submitIdentity(caller: Caller, request: { idToken: string }): Promise<{ ok: true; expires_at: string }>
  /** GET /admin/connections; an unknown cursor throws RelayError INVALID_INPUT. */
  listConnections(admin: AdminCaller, request: ConnectionsRequest): Promise<ConnectionsResult>
  /** POST /admin/reset: reset() for any tenant's user. */
  adminReset(admin: AdminCaller, request: { tenant: string; userId: string; serverId: string | undefined }): Promise<ResetResult>
  /** GET /oauth/start/:ticket: the confirmation page's facts; uses nothing up. */
  describeSignIn(ticketId: string): Promise<DescribeSignInResult>
  /** POST /oauth/start/:ticket: takes the ticket and starts the flow bound to this browser. */
  startSignIn(ticketId: string, browser: BrowserProof): Promise<StartSignInResult>
  /**
   * GET /oauth/callback; `callbackUrl` is $PUBLIC_BASE_URL + the request's path and query,
   * `browserHash` the SHA-256 of the browser-binding cookie the request carried.
   */
  completeSignIn(callbackUrl: URL, browserHash: string | undefined): Promise<CompleteSignInResult>
  /** GET /files/:id: binary tool content kept aside, or undefined for an unknown or expired id. */
  readFile(id: string): Promise<KeptFile | undefined>
  /** The Client ID Metadata Document served at /oauth/client-metadata.json. */
  clientMetadataDocument(): Record<string, unknown>
  /** Resolves when the store answers; throws RelayError STORE_UNAVAILABLE otherwise. */
  checkReady(): Promise<void>
  close(): Promise<void>
}
