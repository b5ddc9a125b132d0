import type { Keyv } from 'keyv'
import type { RelayConfig, ServerConfig } from '../config/load-config.ts'
import type { EraStore } from '../mcp/eras.ts'
import type { OutputSchemas } from '../mcp/output-schemas.ts'
import type { InputStore } from '../store/inputs.ts'
import type { McpPool } from '../mcp/pool.ts'
import type { ToolListCache } from '../mcp/tool-cache.ts'
import type { FetchLike } from '../mcp/upstream-fetch.ts'
import type { DiscoveryCache } from '../oauth/discovery-cache.ts'
import type { ServiceTokenDeps } from '../oauth/client-credentials.ts'
import type { RegistrationDeps } from '../oauth/registration.ts'
import type { RefreshDeps } from '../oauth/refresh.ts'
import type { SignInDeps } from '../oauth/sign-in.ts'
import type { TicketStore } from '../oauth/tickets.ts'
import type { FileStore } from '../store/files.ts'
import type { IdentityStore, ProviderIdentity } from '../store/identities.ts'
import type { PendingSignInStore } from '../store/pending-sign-ins.ts'
import type { TokenOwner, TokenStore } from '../store/tokens.ts'
import { tokenKey } from '../store/tokens.ts'
import type { RelayMetrics } from './metrics.ts'
import type { Caller } from './types.ts'

export interface RelayLogger {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
  error(obj: object, msg: string): void
  debug(obj: object, msg: string): void
}

/** Everything the relay operations use, built once in main.ts. */
export interface RelayDeps {
  readonly config: RelayConfig
  readonly tokens: TokenStore
  readonly tickets: TicketStore
  /** Sign-ins waiting for their confirmation code (SIGN_IN_CONFIRMATION=code). */
  readonly pendingSignIns: PendingSignInStore
  /** Each user's identity at the enterprise identity provider (`grant_type: enterprise`), and provider sign-ins waiting for their code. */
  readonly identities: IdentityStore
  readonly pendingIdentities: PendingSignInStore<ProviderIdentity>
  readonly discovery: DiscoveryCache
  readonly stepUps: Keyv
  readonly toolCache: ToolListCache
  /** The MCP revision each server speaks (DESIGN.md §5). */
  readonly eras: EraStore
  /** Calls waiting for the user's answers (SEP-2322, DESIGN.md §4 USER_INPUT_REQUIRED). */
  readonly inputs: InputStore
  /** Tools' output schemas, compiled per server, for checking structured results. */
  readonly outputSchemas: OutputSchemas
  readonly pool: McpPool
  /** Binary tool content kept aside for GET /files/<id>. */
  readonly files: FileStore
  readonly oauth: SignInDeps & RefreshDeps & ServiceTokenDeps & { readonly registration: RegistrationDeps }
  /** The fetch pooled MCP transports build on (tests may pass one that counts). */
  readonly upstreamFetch: FetchLike
  readonly maxUpstreamResponseBytes: number
  readonly now: () => number
  readonly logger: RelayLogger
  readonly metrics: RelayMetrics
}

export function ownerOf(caller: Caller, server: ServerConfig): TokenOwner {
  return { tenant: caller.tenant, userId: caller.userId, serverId: server.serverId }
}

/** The audit fields of a sign-in event (DESIGN.md §6): who and which server, never a secret. */
export function auditOf(owner: TokenOwner): { tenant: string; userId: string; serverId: string } {
  return { tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId }
}

export function poolKey(owner: TokenOwner): string {
  return tokenKey(owner)
}

export function timeoutFor(deps: RelayDeps, server: ServerConfig): number {
  return server.timeoutMs ?? deps.config.upstreamTimeoutMs
}
