import type { ServerConfig } from '../config/load-config.ts'
import { ServiceAccountRefusedError, ServiceAccountUnavailableError } from '../oauth/client-credentials.ts'
import { DiscoveryError, type ServerAuth } from '../oauth/discovery.ts'
import { asSentence } from '../oauth/error-description.ts'
import type { ClientRegistration } from '../oauth/registration.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import { obtainWorkloadToken, WorkloadAssertionError } from '../oauth/workload-identity.ts'
import { LockWaitTimeoutError } from '../store/lock.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import type { RelayDeps } from './deps.ts'
import { serverTokenSource } from './service-account.ts'
import { discoverServer, selectScope } from './sign-in-link.ts'
import type { NoToken, TokenFor } from './token-source.ts'

/**
 * A server reached with a workload's own identity (`grant_type: workload_identity`, DESIGN.md
 * §3; the MCP extension for client credentials, workload identity federation): one token for
 * the server shared by every tenant and user, as a service account's, obtained with the JWT
 * bearer grant from the JWT in `assertion_file` (oauth/workload-identity.ts). No secret; never a
 * login link and never another grant after a refusal: a refused assertion is the server's error.
 */
export const workloadIdentity = serverTokenSource({
  obtain,
  refusedFresh: (server) => `${server.serverId} refused the token its workload identity just obtained (HTTP 401); ask an administrator to check the workload's access.`,
})

/**
 * RFC 7523 §3.1: client authentication is optional for this grant; the configured `client_id`
 * is sent (as client authentication `none`) where the server offers that method, and no client
 * id is sent elsewhere: the assertion alone identifies the workload.
 */
function workloadClient(server: ServerConfig, auth: ServerAuth): ClientRegistration {
  const offersNone = auth.metadata.token_endpoint_auth_methods_supported?.includes('none') ?? false
  return { clientId: offersNone ? (server.oauth.clientId ?? '') : '', clientSecret: undefined, authMethod: 'none', source: 'configured' }
}

async function obtain(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, stale: UpstreamToken | undefined): Promise<TokenFor> {
  try {
    const token = await obtainWorkloadToken(deps.oauth, owner, stale, async () => {
      const auth = await discoverServer(deps, server)
      return { auth, client: workloadClient(server, auth), scope: selectScope(server, auth, undefined), dpop: server.dpop, assertionFile: server.assertionFile! }
    })
    return { kind: 'token', token, renewed: true }
  } catch (error) {
    const failure = workloadFailure(server, error)
    if (failure) return failure
    throw error
  }
}

/** What the operator must fix, or what will pass, as the server's error; undefined for store trouble (503). */
function workloadFailure(server: ServerConfig, error: unknown): NoToken | undefined {
  if (error instanceof ServiceAccountRefusedError || error instanceof ServiceAccountUnavailableError) {
    return { kind: 'error', code: 'UPSTREAM_ERROR', message: asSentence(error.message) }
  }
  if (error instanceof WorkloadAssertionError || error instanceof DiscoveryError || error instanceof UrlRefusedError) {
    return { kind: 'error', code: 'UPSTREAM_ERROR', message: asSentence(`The workload identity of ${server.serverId} is unavailable: ${error.message}`) }
  }
  if (error instanceof LockWaitTimeoutError) {
    return { kind: 'error', code: 'UPSTREAM_ERROR', message: `The workload identity of ${server.serverId} is busy getting a token; try again shortly.` }
  }
  return undefined
}
