import { DiscoveryError } from '../oauth/discovery.ts'
import { identityProviderOf } from '../oauth/identity-provider.ts'
import { beginProviderSignIn, finishProviderSignIn } from '../oauth/identity-sign-in.ts'
import { UrlRefusedError } from '../oauth/url-guard.ts'
import type { LoginTicket } from '../oauth/tickets.ts'
import { hashConfirmationCode, newConfirmationCode } from './confirmation-code.ts'
import { auditOf, type RelayDeps } from './deps.ts'
import { enterpriseServers, IDENTITY_PROVIDER_ID, providerName, providerOwner, storeIdentity } from './enterprise-identity.ts'
import { confirmPending, discardPending, type ConfirmOutcome } from './pending-sign-in.ts'
import type { Caller, CompleteSignInResult, DescribeSignInResult, StartSignInResult } from './types.ts'

/**
 * The browser's half of the sign-in at the enterprise identity provider (DESIGN.md §3): the same
 * login link, confirmation page, browser binding, callback and SIGN_IN_CONFIRMATION=code as a
 * server's sign-in (relay/sign-in.ts hands these over for tickets of IDENTITY_PROVIDER_ID and
 * callbacks whose state is the provider's). What it obtains is the user's identity, which every
 * enterprise server then exchanges for its own token.
 */

/** What the confirmation page names: the provider, and the servers one sign-in there connects. */
function connectedName(deps: RelayDeps): string {
  const servers = enterpriseServers(deps).map((server) => server.description || server.serverId)
  return `${servers.join(', ')} (organization account at ${providerName(deps)})`
}

/** GET /oauth/start/:ticket for the provider: uses nothing up. */
export function describeProviderSignIn(deps: RelayDeps, ticket: LoginTicket): DescribeSignInResult {
  return { kind: 'confirm', serverName: connectedName(deps), tenant: ticket.tenant, userId: ticket.userId }
}

/** POST /oauth/start/:ticket for the provider: the ticket is taken; the flow is bound to this browser. */
export async function startProviderSignIn(deps: RelayDeps, ticket: LoginTicket, browserHash: string): Promise<StartSignInResult> {
  try {
    const provider = await identityProviderOf(deps.oauth, deps.config.identityProvider!)
    if (!provider.metadata.authorization_endpoint) {
      return { kind: 'invalid', message: `The identity provider ${provider.config.issuer} offers no sign-in page.` }
    }
    const url = await beginProviderSignIn(deps.oauth, provider, { owner: ticket, redirectUri: deps.config.callbackUrl, browserHash })
    deps.logger.info({ event: 'sign_in.started', ...auditOf(ticket) }, 'sign-in started')
    return { kind: 'redirect', url: url.href }
  } catch (error) {
    if (error instanceof DiscoveryError || error instanceof UrlRefusedError) return { kind: 'invalid', message: `Sign-in is unavailable: ${error.message}` }
    throw error
  }
}

/** GET /oauth/callback for the provider's sign-in. */
export async function completeProviderSignIn(deps: RelayDeps, callbackUrl: URL, browserHash: string | undefined): Promise<CompleteSignInResult> {
  let result
  try {
    const provider = await identityProviderOf(deps.oauth, deps.config.identityProvider!)
    result = await finishProviderSignIn(deps.oauth, provider, callbackUrl.searchParams, browserHash)
  } catch (error) {
    if (error instanceof DiscoveryError || error instanceof UrlRefusedError) return { kind: 'failed', status: 502, message: `Sign-in could not be completed: ${error.message}` }
    throw error
  }
  if (result.kind === 'failed') {
    const reason = result.refused ?? (result.owner ? 'authorization' : 'state')
    deps.logger.warn(
      { event: 'sign_in.refused', reason, ...(result.owner ? auditOf(result.owner) : {}), oauthError: result.oauthError, callbackError: result.callbackError },
      'sign-in refused',
    )
    deps.metrics.recordSignIn(IDENTITY_PROVIDER_ID, 'failed')
    return { kind: 'failed', status: result.status, message: result.message }
  }
  deps.metrics.recordSignIn(IDENTITY_PROVIDER_ID, 'completed')
  const name = connectedName(deps)
  if (deps.config.signInConfirmation === 'code') {
    // DESIGN.md §6: the identity waits until the same person gives the assistant this code.
    const code = newConfirmationCode()
    await deps.pendingIdentities.hold(result.owner, result.identity, hashConfirmationCode(result.owner, code))
    deps.logger.info({ event: 'sign_in.completed', ...auditOf(result.owner), pendingConfirmation: true }, 'sign-in completed, waiting for its confirmation code')
    return { kind: 'connected', serverId: IDENTITY_PROVIDER_ID, description: name, confirmationCode: code }
  }
  await storeIdentity(deps, result.owner, result.identity)
  deps.logger.info({ event: 'sign_in.completed', ...auditOf(result.owner) }, 'sign-in completed')
  return { kind: 'connected', serverId: IDENTITY_PROVIDER_ID, description: name }
}

/**
 * SIGN_IN_CONFIRMATION=code: `code` tried on the caller's provider sign-in waiting for it, once
 * per request whatever the number of enterprise servers asked about, under a lock per user
 * across replicas (five wrong codes, whoever sends them, discard it).
 */
export function confirmProviderSignIn(deps: RelayDeps, caller: Caller, code: string): Promise<ConfirmOutcome> {
  return confirmPending(deps, deps.pendingIdentities, providerOwner(caller), code, (identity) => storeIdentity(deps, caller, identity))
}

/** force_reauth while a provider sign-in waits: that one is dropped, and the user gets a new link. */
export function discardProviderSignIn(deps: RelayDeps, caller: Caller): Promise<void> {
  return discardPending(deps, deps.pendingIdentities, providerOwner(caller))
}
