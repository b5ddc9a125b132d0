import { adminReset, listConnections } from './admin.ts'
import { authStatus } from './auth-status.ts'
import { callTool } from './call-tool.ts'
import type { RelayDeps } from './deps.ts'
import { listTools } from './list-tools.ts'
import { submitIdentity } from './enterprise-identity.ts'
import { reset } from './reset.ts'
import { completeSignIn, describeSignIn, startSignIn } from './sign-in.ts'
import type { RelayService } from './types.ts'

/** The relay's operations over its parts; `main.ts` builds the parts, `app.ts` serves this. */
export function createRelayService(deps: RelayDeps, lifecycle: { ping(): Promise<void>; close(): Promise<void> }): RelayService {
  return {
    authStatus: (caller, request) => authStatus(deps, caller, request),
    listTools: (caller, request) => listTools(deps, caller, request),
    callTool: (caller, request) => callTool(deps, caller, request),
    reset: (caller, request) => reset(deps, caller, request),
    submitIdentity: (caller, request) => submitIdentity(deps, caller, request.idToken),
    listConnections: (admin, request) => listConnections(deps, admin, request),
    adminReset: (admin, request) => adminReset(deps, admin, request),
    describeSignIn: (ticketId) => describeSignIn(deps, ticketId),
    startSignIn: (ticketId, browser) => startSignIn(deps, ticketId, browser),
    completeSignIn: (callbackUrl, browserHash) => completeSignIn(deps, callbackUrl, browserHash),
    readFile: (id) => deps.files.read(id),
    clientMetadataDocument: () => clientMetadataDocument(deps),
    checkReady: () => lifecycle.ping(),
    async close() {
      await deps.pool.close()
      await lifecycle.close()
    },
  }
}

/** MCP 2025-11-25 "Client ID Metadata Documents": the document whose URL is the relay's client_id. */
function clientMetadataDocument(deps: RelayDeps): Record<string, unknown> {
  const redirectUris = new Set([deps.config.callbackUrl])
  for (const server of deps.config.servers.values()) if (server.oauth.redirectUri) redirectUris.add(server.oauth.redirectUri)
  return {
    client_id: deps.config.clientMetadataUrl ?? `${deps.config.publicBaseUrl}/oauth/client-metadata.json`,
    client_name: deps.oauth.registration.clientName,
    client_uri: deps.config.publicBaseUrl,
    redirect_uris: [...redirectUris],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  }
}
