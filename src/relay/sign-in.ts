import type { ServerConfig } from '../config/load-config.ts'
import { forgetClientRegistration } from '../oauth/registration.ts'
import { beginSignIn, finishSignIn } from '../oauth/sign-in.ts'
import { DiscoveryError } from '../oauth/discovery.ts'
import { isProviderState } from '../oauth/identity-sign-in.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { hashConfirmationCode, newConfirmationCode } from './confirmation-code.ts'
import { redirectUriFor } from '../oauth/redirect-uri.ts'
import { auditOf, poolKey, type RelayDeps } from './deps.ts'
import { IDENTITY_PROVIDER_ID } from './enterprise-identity.ts'
import { completeProviderSignIn, describeProviderSignIn, startProviderSignIn } from './provider-sign-in.ts'
import { dropUserToolList } from './tool-lists.ts'
import { revokeReplacedGrant, storeReplacingGrant } from './revoke-grant.ts'
import { resolveServerAuth } from './sign-in-link.ts'
import type { BrowserProof, CompleteSignInResult, DescribeSignInResult, StartSignInResult } from './types.ts'

const INVALID_LINK = 'This sign-in link is unknown, expired or was already used. Ask the assistant for a new link.'

/** GET /oauth/start/:ticket — DESIGN.md §5 step 2, §6: what the confirmation page names. Uses nothing up. */
export async function describeSignIn(deps: RelayDeps, ticketId: string): Promise<DescribeSignInResult> {
  const ticket = await deps.tickets.peek(ticketId)
  if (ticket?.serverId === IDENTITY_PROVIDER_ID && deps.config.identityProvider) return describeProviderSignIn(deps, ticket)
  const server = ticket && deps.config.servers.get(ticket.serverId)
  if (!ticket || !server) return { kind: 'invalid', message: INVALID_LINK }
  return { kind: 'confirm', serverName: server.description || server.serverId, tenant: ticket.tenant, userId: ticket.userId }
}

/**
 * POST /oauth/start/:ticket — DESIGN.md §5, sign-in step 2: the person pressed Continue. A failed
 * CSRF check uses nothing up; otherwise the ticket is taken (once) and the flow is bound to the
 * browser that sent the form.
 */
export async function startSignIn(deps: RelayDeps, ticketId: string, browser: BrowserProof): Promise<StartSignInResult> {
  if (!browser.csrfValid) {
    const ticket = await deps.tickets.peek(ticketId)
    deps.logger.warn(
      { event: 'sign_in.refused', reason: 'csrf', ...(ticket ? auditOf(ticket) : {}) },
      'sign-in refused: confirmation form without a valid CSRF token',
    )
    return {
      kind: 'refused',
      message: 'This confirmation was not sent from the sign-in page in this browser. Open the sign-in link again and press Continue there.',
    }
  }
  const ticket = await deps.tickets.take(ticketId)
  if (ticket?.serverId === IDENTITY_PROVIDER_ID && deps.config.identityProvider) return startProviderSignIn(deps, ticket, browser.browserHash)
  const server = ticket && deps.config.servers.get(ticket.serverId)
  if (!ticket || !server) return { kind: 'invalid', message: INVALID_LINK }
  try {
    const { auth, client } = await resolveServerAuth(deps, server)
    const url = await beginSignIn(deps.oauth, {
      owner: ticket,
      server,
      auth,
      client,
      redirectUri: redirectUriFor(deps.config.callbackUrl, server, auth),
      scope: ticket.scope,
      browserHash: browser.browserHash,
    })
    deps.logger.info({ event: 'sign_in.started', ...auditOf(ticket) }, 'sign-in started')
    return { kind: 'redirect', url: url.href }
  } catch (error) {
    if (error instanceof DiscoveryError) return { kind: 'invalid', message: `Sign-in to ${server.serverId} is unavailable: ${error.message}` }
    throw error
  }
}

/** GET /oauth/callback — DESIGN.md §5, sign-in step 3. */
export async function completeSignIn(deps: RelayDeps, callbackUrl: URL, browserHash: string | undefined): Promise<CompleteSignInResult> {
  if (isProviderState(callbackUrl.searchParams.get('state')) && deps.config.identityProvider) return completeProviderSignIn(deps, callbackUrl, browserHash)
  const result = await finishSignIn(deps.oauth, callbackUrl, browserHash, async (serverId) => {
    const server = deps.config.servers.get(serverId)
    return server ? { ...(await resolveServerAuth(deps, server)), dpop: server.dpop } : undefined
  })
  if (result.kind === 'failed') {
    const server = result.owner && deps.config.servers.get(result.owner.serverId)
    if (server && result.oauthError === 'invalid_client') {
      const { auth } = await resolveServerAuth(deps, server)
      await forgetClientRegistration(deps.oauth.registration, auth, redirectUriFor(deps.config.callbackUrl, server, auth))
    }
    // `cookie`: another browser than the one that pressed Continue; `state`: no live flow (expired,
    // used, or made up); `authorization`: the authorization server refused or the exchange failed.
    const reason = result.refused ?? (result.owner ? 'authorization' : 'state')
    deps.logger.warn(
      { event: 'sign_in.refused', reason, ...(result.owner ? auditOf(result.owner) : {}), oauthError: result.oauthError, callbackError: result.callbackError },
      'sign-in refused',
    )
    // Only a configured server id becomes a label value; a callback without a live flow has none.
    deps.metrics.recordSignIn(server ? server.serverId : 'unknown', 'failed')
    return { kind: 'failed', status: result.status, message: result.message }
  }
  const server = deps.config.servers.get(result.serverId)!
  deps.metrics.recordSignIn(server.serverId, 'completed')
  if (deps.config.signInConfirmation === 'code') {
    // DESIGN.md §6: the token waits until the same person gives the assistant this code.
    const code = newConfirmationCode()
    await deps.pendingSignIns.hold(result.owner, result.token, hashConfirmationCode(result.owner, code))
    deps.logger.info(
      { event: 'sign_in.completed', ...auditOf(result.owner), pendingConfirmation: true },
      'sign-in completed, waiting for its confirmation code',
    )
    return { kind: 'connected', serverId: server.serverId, description: server.description, confirmationCode: code }
  }
  await storeSignedInToken(deps, server, result.owner, result.token)
  deps.logger.info({ event: 'sign_in.completed', ...auditOf(result.owner) }, 'sign-in completed')
  return { kind: 'connected', serverId: server.serverId, description: server.description }
}

/**
 * The one write of a signed-in user's token: a completed sign-in (page mode) and a confirmed
 * code (code mode) both end here.
 */
export async function storeSignedInToken(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, token: UpstreamToken): Promise<void> {
  // Under the refresh lock (a refresh in flight would otherwise store the old grant's token over
  // this one); the grant this one replaces (force_reauth as another account) is then revoked.
  const replaced = await storeReplacingGrant(deps, owner, token)
  if (replaced) revokeReplacedGrant(deps, server, owner, replaced, token)
  // A new token (perhaps another account): the old session and per-user list depended on the old one.
  await deps.pool.drop(poolKey(owner))
  await dropUserToolList(deps, server, owner)
}
