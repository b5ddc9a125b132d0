import type { ServerConfig } from '../config/load-config.ts'
import type { ServerAuth } from '../oauth/discovery.ts'
import type { ClientRegistration } from '../oauth/registration.ts'
import { obtainWorkloadToken, WorkloadAssertionError } from '../oauth/workload-identity.ts'
import { serverTokenSource } from './service-account.ts'
import { discoverServer, selectScope } from './sign-in-link.ts'

/**
 * A server reached with a workload's own identity (`grant_type: workload_identity`, DESIGN.md
 * §3; the MCP extension for client credentials, workload identity federation): one token for
 * the server shared by every tenant and user, as a service account's, obtained with the JWT
 * bearer grant from the JWT in `assertion_file` (oauth/workload-identity.ts). No secret; never a
 * login link and never another grant after a refusal: a refused assertion is the server's error.
 */
export const workloadIdentity = serverTokenSource({
  holder: 'workload identity',
  obtain: (deps, server, owner, stale) =>
    obtainWorkloadToken(deps.oauth, owner, stale, async () => {
      const auth = await discoverServer(deps, server)
      return { auth, client: workloadClient(server, auth), scope: selectScope(server, auth, undefined), dpop: server.dpop, assertionFile: server.assertionFile! }
    }),
  unavailable: (error) => error instanceof WorkloadAssertionError,
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
