import { SdkError, SdkErrorCode, type Client } from '@modelcontextprotocol/client'
import type { ServerConfig } from '../config/load-config.ts'
import { isRelayError } from '../errors.ts'
import { liveCall, runInCall } from '../mcp/call-context.ts'
import { connectUpstream, isEraRefused, isSessionLost, type ConnectMode } from '../mcp/connect.ts'
import type { EraVerdict } from '../mcp/eras.ts'
import type { OpenSession } from '../mcp/pool.ts'
import { createUpstreamFetch, UpstreamAuthError, UpstreamTooLargeError } from '../mcp/upstream-fetch.ts'
import { createDpopKeyring, withDpop } from '../oauth/dpop.ts'
import { findRefusal } from '../oauth/url-guard.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { poolKey, timeoutFor, type RelayDeps } from './deps.ts'
import { serviceAccount } from './service-account.ts'
import type { NoToken, TokenSource } from './token-source.ts'
import { dropToolList } from './tool-lists.ts'
import type { Caller } from './types.ts'
import { cleanMcpMessage } from './user-action.ts'
import { userSignIn } from './user-sign-in.ts'
import { enterprise } from './enterprise.ts'
import { workloadIdentity } from './workload-identity.ts'

export type Access<T> = { kind: 'ok'; value: T; authorized: boolean } | NoToken

/** Renewals one call may make: a refresh, then a token another request stored meanwhile (twice at most). */
const MAX_RENEWALS = 3

/** The keys of DPoP-bound tokens in use (RFC 9449), for the requests of the sessions that send them. */
const dpopKeys = createDpopKeyring(10_000)

/** The way `server` authorizes its callers: each user's sign-in, its service account, the user's enterprise identity, or its workload identity. */
export function tokenSourceFor(server: ServerConfig): TokenSource {
  return { client_credentials: serviceAccount, workload_identity: workloadIdentity, enterprise: enterprise, authorization_code: userSignIn }[server.grantType]
}

/**
 * Runs `fn` with an SDK client for `server`, with a token from the server's token source
 * (token-source.ts). The client depends on the MCP revision the server speaks (DESIGN.md §5):
 * a 2026-07-28 server is stateless, so one client serves every user of it and a call is one HTTP
 * request carrying that user's token; a 2025-era server gets a pooled session per (tenant, user,
 * server). A server whose revision is not known yet is asked once (mcp/eras.ts).
 * - no token and a server that wants one: what the source says (a login link, or an error);
 * - a 401 renews the token once through the source and retries; a 403 `insufficient_scope` asks
 *   the source to step up;
 * - a session the server no longer knows (404) is reopened once; a server that no longer answers
 *   in the revision it was taken for is asked again, once;
 * - upstream trouble: `error` (TIMEOUT or UPSTREAM_ERROR). Store trouble throws (503).
 * `token` is the caller's stored token when already read (or a stand-in, in tests).
 */
export async function withUpstream<T>(
  deps: RelayDeps,
  caller: Caller,
  server: ServerConfig,
  fn: (client: Client, timeoutMs: number) => Promise<T>,
  options: { token?: UpstreamToken | undefined } = {},
): Promise<Access<T>> {
  const source = tokenSourceFor(server)
  const owner = source.ownerOf(caller, server)
  const timeoutMs = timeoutFor(deps, server)
  const first = await source.current(deps, server, owner, options.token)
  if (first.kind !== 'token' && first.kind !== 'none') return first
  let token = first.kind === 'token' ? first.token : undefined
  let renewed = first.kind === 'token' && first.renewed

  // Read once here: a server known to be open is not looked up again after the call.
  const known = token ? undefined : await deps.discovery.get(server)
  if (known?.kind === 'oauth') return source.missing(deps, server, owner, {})

  let sessionLost = false
  let eraAskedAgain = false
  let renewals = 0
  for (;;) {
    try {
      if (token) dpopKeys.remember(token)
      const accessToken = token?.accessToken
      const session = await sessionFor(deps, server, owner, timeoutMs)
      const value = await runInCall(accessToken, () =>
        deps.pool.use(session.key, accessToken, session.open, (client) => deps.metrics.timeUpstream(server.serverId, () => fn(client, timeoutMs))),
      )
      if (!token && !known) await markOpen(deps, server)
      return { kind: 'ok', value, authorized: token !== undefined }
    } catch (thrown) {
      // The SDK may wrap what the relay's fetch threw (a refused probe: "Version negotiation probe failed").
      const refused = foundIn(thrown, UpstreamAuthError)
      const error = refused ?? thrown
      if (refused?.status === 401) {
        if (!token || renewals === MAX_RENEWALS) return source.missing(deps, server, owner, refused.challenge)
        const next = await source.renew(deps, server, owner, token, renewed, refused.challenge)
        if (next.kind !== 'token') return next
        token = next.token
        renewed = true
        renewals++
        continue
      }
      if (refused?.status === 403 && token) {
        if (refused.challenge.error === 'insufficient_scope') return source.stepUp(deps, server, owner, token, refused.challenge.scope)
        return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} refused the request (HTTP 403).` }
      }
      if (isRelayError(error)) throw error
      if (error instanceof EraLearned) continue
      if (!sessionLost && isSessionLost(error)) {
        // MCP "Session Management": the server forgot the session. The pool has retired that
        // session (and only it: dropping by key here would also close the new session a
        // concurrent caller just opened), so the retry opens or joins a new one.
        sessionLost = true
        continue
      }
      if (!eraAskedAgain && server.protocol === 'auto' && isEraRefused(error)) {
        // DESIGN.md §5: the verdict is refreshed when a server stops answering in its era (it
        // was upgraded, or moved back); the pool has retired the client that was refused.
        eraAskedAgain = true
        deps.logger.info({ serverId: server.serverId }, 'MCP revision refused, asking the server again')
        await deps.eras.forget(server)
        continue
      }
      return upstreamFailure(server, error)
    }
  }
}

/** The server's revision was learned while opening a 2025-era session; the call goes to its client for that revision. */
class EraLearned extends Error {
  constructor() {
    super('the MCP revision of the server was learned')
    this.name = 'EraLearned'
  }
}

/**
 * Where a call to `server` for `owner` runs: a 2026-07-28 server's one client (the pool key names
 * the server), or the owner's 2025-era session; for a server not known yet, the owner's session,
 * opened with the SDK's negotiation (its verdict is kept for every replica: a 2026-07-28 server's
 * probe client is then let go, and the call retried on the server's client).
 */
async function sessionFor(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, timeoutMs: number): Promise<{ key: string; open: OpenSession }> {
  const verdict = await deps.eras.get(server)
  if (verdict?.era === 'modern') {
    return { key: `modern:${server.serverId}`, open: (_sessionToken, onClose) => connect(deps, server, owner, timeoutMs, { kind: 'modern', discover: verdict.discover }, callTokenOnly, onClose) }
  }
  if (verdict?.era === 'legacy') return { key: poolKey(owner), open: (sessionToken, onClose) => connect(deps, server, owner, timeoutMs, { kind: 'legacy' }, sessionToken, onClose) }
  return {
    key: poolKey(owner),
    open: async (sessionToken, onClose) => {
      let mine: Client | undefined
      const learned = await deps.eras.probe(server, async () => {
        const negotiate: ConnectMode = server.protocol === '2026-07-28' ? { kind: 'negotiate', pin: '2026-07-28' } : { kind: 'negotiate' }
        mine = await connect(deps, server, owner, timeoutMs, negotiate, sessionToken, onClose)
        return verdictOf(mine)
      })
      if (learned?.era === 'legacy') return mine ?? connect(deps, server, owner, timeoutMs, { kind: 'legacy' }, sessionToken, onClose)
      // A stateless client holds nothing to end upstream.
      await mine?.close()
      throw new EraLearned()
    },
  }
}

function verdictOf(client: Client): EraVerdict {
  const discover = client.getDiscoverResult()
  return client.getProtocolEra() === 'modern' && discover ? { era: 'modern', discover } : { era: 'legacy' }
}

/**
 * The token a request sends: the call's own (call-context.ts). A 2025-era session's requests made
 * outside any call (its GET stream and that stream's reconnects) send the session's latest token;
 * a 2026-07-28 client, shared by every user of its server, sends none outside a call.
 */
function callTokenOnly(): string | undefined {
  return undefined
}

function connect(
  deps: RelayDeps,
  server: ServerConfig,
  owner: TokenOwner,
  timeoutMs: number,
  mode: ConnectMode,
  sessionToken: () => string | undefined,
  onClose: () => void,
): Promise<Client> {
  const accessToken = () => {
    const call = liveCall()
    return call ? call.accessToken : sessionToken()
  }
  return connectUpstream({
    url: server.mcpUrl,
    fetch: createUpstreamFetch({
      accessToken,
      // RFC 9449: a DPoP-bound token is presented with a proof of its key on every request.
      presentWith: (token, fetch) => {
        const session = dpopKeys.sessionFor(token)
        return session && withDpop(fetch, session, token)
      },
      maxResponseBytes: deps.maxUpstreamResponseBytes,
      fetch: deps.upstreamFetch,
    }),
    timeoutMs,
    mode,
    onClose,
    onToolsChanged: () => {
      deps.logger.debug({ serverId: server.serverId }, 'tools/list_changed, cache dropped')
      dropToolList(deps, server, owner).catch((error: unknown) => {
        deps.logger.warn({ serverId: server.serverId, err: error }, 'tool cache drop failed')
      })
    },
  })
}

async function markOpen(deps: RelayDeps, server: ServerConfig): Promise<void> {
  const known = await deps.discovery.get(server)
  if (!known) await deps.discovery.set(server, { kind: 'open' })
}

function upstreamFailure(server: ServerConfig, error: unknown): Extract<NoToken, { kind: 'error' }> {
  if (error instanceof SdkError && error.code === SdkErrorCode.RequestTimeout) {
    return { kind: 'error', code: 'TIMEOUT', message: `${server.serverId} did not answer in time.` }
  }
  const tooLarge = foundIn(error, UpstreamTooLargeError)
  if (tooLarge) return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId}: ${tooLarge.message}.` }
  // The connect-time SSRF check refused the connection: say so rather than "fetch failed".
  // The SDK prefixes a server's JSON-RPC error message with "MCP error <code>: " each time it is re-thrown.
  const detail = findRefusal(error)?.message ?? (error instanceof Error ? cleanMcpMessage(error.message) : String(error))
  // One line: a validation failure of the SDK's spans many (a JSON dump of every issue).
  return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} failed: ${truncate(detail.replace(/\s+/g, ' ').trim(), 300)}` }
}

/** An error of the relay's own kind, as thrown or as the cause of what the SDK threw. */
function foundIn<E extends Error>(error: unknown, kind: abstract new (...args: never[]) => E): E | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    if (current instanceof kind) return current
  }
  return undefined
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text
}
