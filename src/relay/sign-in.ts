import { forgetClientRegistration } from '../oauth/registration.ts'
import { beginSignIn, finishSignIn } from '../oauth/sign-in.ts'
import { DiscoveryError } from '../oauth/discovery.ts'
import { poolKey, redirectUriFor, toolCacheKey, type RelayDeps } from './deps.ts'
import { revokeReplacedGrant, storeReplacingGrant } from './revoke-grant.ts'
import { resolveServerAuth } from './sign-in-link.ts'
import type { CompleteSignInResult, StartSignInResult } from './types.ts'

/** GET /oauth/start/:ticket — DESIGN.md §5, sign-in step 2. */
export async function startSignIn(deps: RelayDeps, ticketId: string): Promise<StartSignInResult> {
  const ticket = await deps.tickets.take(ticketId)
  const server = ticket && deps.config.servers.get(ticket.serverId)
  if (!ticket || !server) {
    return { kind: 'invalid', message: 'This sign-in link is unknown, expired or was already used. Ask the assistant for a new link.' }
  }
  try {
    const { auth, client } = await resolveServerAuth(deps, server)
    const url = await beginSignIn(deps.oauth, {
      owner: ticket,
      server,
      auth,
      client,
      redirectUri: redirectUriFor(deps, server),
      scope: ticket.scope,
    })
    deps.logger.info({ serverId: server.serverId, tenant: ticket.tenant }, 'sign-in started')
    return { kind: 'redirect', url: url.href }
  } catch (error) {
    if (error instanceof DiscoveryError) return { kind: 'invalid', message: `Sign-in to ${server.serverId} is unavailable: ${error.message}` }
    throw error
  }
}

/** GET /oauth/callback — DESIGN.md §5, sign-in step 3. */
export async function completeSignIn(deps: RelayDeps, callbackUrl: URL): Promise<CompleteSignInResult> {
  const result = await finishSignIn(deps.oauth, callbackUrl.searchParams, async (serverId) => {
    const server = deps.config.servers.get(serverId)
    return server ? resolveServerAuth(deps, server) : undefined
  })
  if (result.kind === 'failed') {
    const server = result.owner && deps.config.servers.get(result.owner.serverId)
    if (server && result.oauthError === 'invalid_client') {
      const { auth } = await resolveServerAuth(deps, server)
      await forgetClientRegistration(deps.oauth.registration, auth, redirectUriFor(deps, server))
    }
    deps.logger.warn({ serverId: result.owner?.serverId, oauthError: result.oauthError, callbackError: result.callbackError }, 'sign-in failed')
    // Only a configured server id becomes a label value; a callback without a live flow has none.
    deps.metrics.recordSignIn(server ? server.serverId : 'unknown', 'failed')
    return { kind: 'failed', status: result.status, message: result.message }
  }
  const server = deps.config.servers.get(result.serverId)!
  // Revocation (issue 10 item 5): store the new grant, then revoke the one it replaced (relay/revoke-grant.ts).
  const replaced = await storeReplacingGrant(deps, result.owner, result.token)
  if (replaced) revokeReplacedGrant(deps, server, result.owner, replaced, result.token)
  // End of revocation.
  // A new token (perhaps another account): the old session and per-user list depended on the old one.
  await deps.pool.drop(poolKey(result.owner))
  if (server.toolCache === 'user') await deps.toolCache.drop(toolCacheKey(server, result.owner))
  deps.logger.info({ serverId: server.serverId, tenant: result.owner.tenant }, 'sign-in completed')
  deps.metrics.recordSignIn(server.serverId, 'completed')
  return { kind: 'connected', serverId: server.serverId, description: server.description }
}
