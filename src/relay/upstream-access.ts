import { AsyncLocalStorage } from 'node:async_hooks'
import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js'
import type { ServerConfig } from '../config/load-config.ts'
import { isRelayError } from '../errors.ts'
import { connectUpstream, isSessionLost } from '../mcp/connect.ts'
import { createUpstreamFetch, UpstreamAuthError, UpstreamTooLargeError } from '../mcp/upstream-fetch.ts'
import { createDpopKeyring, withDpop } from '../oauth/dpop.ts'
import { findRefusal } from '../oauth/url-guard.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { poolKey, timeoutFor, toolCacheKey, type RelayDeps } from './deps.ts'
import { serviceAccount } from './service-account.ts'
import type { NoToken, TokenSource } from './token-source.ts'
import type { Caller } from './types.ts'
import { cleanMcpMessage } from './user-action.ts'
import { userSignIn } from './user-sign-in.ts'
import { enterprise } from './enterprise.ts'
import { workloadIdentity } from './workload-identity.ts'

export type Access<T> = { kind: 'ok'; value: T; authorized: boolean } | NoToken

/**
 * The access token of the call in progress, for the requests that call makes. One user's
 * concurrent calls share a pooled session, whose token is the last caller's: a call still holding
 * the previous token could otherwise put it on the retry of a call that has just refreshed, and
 * that fresh token would seem refused, signing the user out for nothing. Once a call has ended,
 * what outlives it in its context (the session it opened, its GET stream and that stream's
 * reconnects) sends the session's latest token.
 */
const callToken = new AsyncLocalStorage<{ readonly accessToken: string | undefined; ended: boolean }>()

function currentToken(session: () => string | undefined): string | undefined {
  const call = callToken.getStore()
  return call && !call.ended ? call.accessToken : session()
}

/** Renewals one call may make: a refresh, then a token another request stored meanwhile (twice at most). */
const MAX_RENEWALS = 3

/** The keys of DPoP-bound tokens in use (RFC 9449), for the requests of the sessions that send them. */
const dpopKeys = createDpopKeyring(10_000)

/** The way `server` authorizes its callers: each user's sign-in, its service account, the user's enterprise identity, or its workload identity. */
export function tokenSourceFor(server: ServerConfig): TokenSource {
  return { client_credentials: serviceAccount, workload_identity: workloadIdentity, enterprise: enterprise, authorization_code: userSignIn }[server.grantType]
}

/**
 * Runs `fn` on the caller's pooled session with `server`, with a token from the server's token
 * source (token-source.ts):
 * - no token and a server that wants one: what the source says (a login link, or an error);
 * - a 401 renews the token once through the source and retries; a 403 `insufficient_scope` asks
 *   the source to step up;
 * - a session the server no longer knows (404) is reopened once;
 * - upstream trouble: `error` (TIMEOUT or UPSTREAM_ERROR). Store trouble throws (503).
 * `known` is the caller's stored token when already read (or a stand-in, in tests).
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
  let renewals = 0
  for (;;) {
    try {
      if (token) dpopKeys.remember(token)
      const call = { accessToken: token?.accessToken, ended: false }
      const value = await callToken
        .run(call, () =>
          deps.pool.use(poolKey(owner), call.accessToken, openSession(deps, owner, server, timeoutMs), (client) =>
            deps.metrics.timeUpstream(server.serverId, () => fn(client, timeoutMs)),
          ),
        )
        .finally(() => {
          call.ended = true
        })
      if (!token && !known) await markOpen(deps, server)
      return { kind: 'ok', value, authorized: token !== undefined }
    } catch (error) {
      if (error instanceof UpstreamAuthError && error.status === 401) {
        if (!token || renewals === MAX_RENEWALS) return source.missing(deps, server, owner, error.challenge)
        const next = await source.renew(deps, server, owner, token, renewed, error.challenge)
        if (next.kind !== 'token') return next
        token = next.token
        renewed = true
        renewals++
        continue
      }
      if (error instanceof UpstreamAuthError && error.status === 403 && token) {
        if (error.challenge.error === 'insufficient_scope') return source.stepUp(deps, server, owner, token, error.challenge.scope)
        return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} refused the request (HTTP 403).` }
      }
      if (isRelayError(error)) throw error
      if (!sessionLost && isSessionLost(error)) {
        // MCP "Session Management": the server forgot the session. The pool has retired that
        // session (and only it: dropping by key here would also close the new session a
        // concurrent caller just opened), so the retry opens or joins a new one.
        sessionLost = true
        continue
      }
      return upstreamFailure(server, error)
    }
  }
}

function openSession(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, timeoutMs: number) {
  return (accessToken: () => string | undefined, onClose: () => void) =>
    connectUpstream({
      url: server.mcpUrl,
      fetch: createUpstreamFetch({
        accessToken: () => currentToken(accessToken),
        presentWith: (token, fetch) => {
          const signer = dpopKeys.signerFor(token)
          return signer && withDpop(fetch, signer, token)
        },
        maxResponseBytes: deps.maxUpstreamResponseBytes,
        fetch: deps.upstreamFetch,
      }),
      timeoutMs,
      onClose,
      onToolsChanged: () => {
        deps.logger.debug({ serverId: server.serverId }, 'tools/list_changed, cache dropped')
        deps.toolCache.drop(toolCacheKey(server, owner)).catch((error: unknown) => {
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
  if (error instanceof McpError && error.code === ErrorCode.RequestTimeout) {
    return { kind: 'error', code: 'TIMEOUT', message: `${server.serverId} did not answer in time.` }
  }
  if (error instanceof UpstreamTooLargeError) return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId}: ${error.message}.` }
  // The connect-time SSRF check refused the connection: say so rather than "fetch failed".
  // The SDK prefixes a server's JSON-RPC error message with "MCP error <code>: " each time it is re-thrown.
  const detail = findRefusal(error)?.message ?? (error instanceof Error ? cleanMcpMessage(error.message) : String(error))
  return { kind: 'error', code: 'UPSTREAM_ERROR', message: `${server.serverId} failed: ${truncate(detail, 300)}` }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text
}
