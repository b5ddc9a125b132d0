import * as oidc from 'openid-client'
import type { ProviderIdentity } from '../store/identities.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { describeOAuthFailure } from './oauth-errors.ts'
import { providerConfiguration, type IdentityProvider } from './identity-provider.ts'
import { startedInAnotherBrowser, type SignInDeps } from './sign-in.ts'

/**
 * The user's sign-in at the enterprise identity provider (DESIGN.md §3): an OpenID Connect
 * authorization code flow with PKCE, through the same login link, confirmation page, browser
 * binding and callback as a server's sign-in. Its flows share the flow store, under a `state`
 * that starts with PROVIDER_STATE_PREFIX, so the callback knows which sign-in it completes
 * before it reads anything.
 */
export const PROVIDER_STATE_PREFIX = 'idp.'

/** Whether a callback's `state` belongs to a sign-in at the identity provider. */
export function isProviderState(state: string | null): boolean {
  return state !== null && state.startsWith(PROVIDER_STATE_PREFIX)
}

/** The browser pressed Continue: the flow (bound to that browser) and the provider's authorization URL. */
export async function beginProviderSignIn(
  deps: SignInDeps,
  provider: IdentityProvider,
  request: { owner: TokenOwner; redirectUri: string; browserHash: string },
): Promise<URL> {
  const config = providerConfiguration(deps, provider)
  const codeVerifier = oidc.randomPKCECodeVerifier()
  const state = `${PROVIDER_STATE_PREFIX}${oidc.randomState()}`
  await deps.flows.start(state, {
    ...request.owner,
    codeVerifier,
    redirectUri: request.redirectUri,
    // A sign-in, not a grant for a resource: no RFC 8707 resource is sent to the provider.
    resource: '',
    scope: provider.config.scope,
    issuer: provider.metadata.issuer,
    clientId: provider.client.clientId,
    browserHash: request.browserHash,
  })
  return oidc.buildAuthorizationUrl(config, {
    redirect_uri: request.redirectUri,
    response_type: 'code',
    scope: provider.config.scope,
    // OAuth 2.1 / RFC 9700 §2.1.1: PKCE S256, which also binds the code to this flow (OpenID
    // Connect Core §3.1.2.1 leaves `nonce` optional for the code flow).
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
  })
}

export type FinishProviderSignIn =
  | { kind: 'identity'; owner: TokenOwner; identity: ProviderIdentity }
  | { kind: 'failed'; status: 400 | 502; message: string; owner?: TokenOwner; oauthError?: string; callbackError?: string; refused?: 'cookie' }

/**
 * The provider sent the browser back: the flow by `state` and this browser's cookie (once), then
 * the code exchanged for tokens. openid-client checks `state`, RFC 9207 `iss` and the ID token's
 * `iss`, `aud`, `exp` and `iat` (OpenID Connect Core §3.1.3.7: received straight from the token
 * endpoint over TLS, its signature need not be checked).
 */
export async function finishProviderSignIn(
  deps: SignInDeps,
  provider: IdentityProvider,
  callbackQuery: URLSearchParams,
  browserHash: string | undefined,
): Promise<FinishProviderSignIn> {
  const state = callbackQuery.get('state')!
  const taken = await deps.flows.take(state, browserHash)
  if (taken.kind === 'other-browser') return startedInAnotherBrowser(taken.owner)
  if (taken.kind === 'none') return { kind: 'failed', status: 400, message: 'This sign-in link has expired or was already used. Ask the assistant for a new link.' }
  const { flow } = taken
  const owner: TokenOwner = { tenant: flow.tenant, userId: flow.userId, serverId: flow.serverId }
  const refused = callbackQuery.get('error')
  if (refused) return { kind: 'failed', status: 400, owner, callbackError: refused, message: `Sign-in was not completed: ${callbackQuery.get('error_description') || refused}` }
  if (provider.metadata.issuer !== flow.issuer || provider.client.clientId !== flow.clientId) {
    return { kind: 'failed', status: 400, owner, message: 'The identity provider configuration changed during sign-in. Ask the assistant for a new link.' }
  }
  const currentUrl = new URL(flow.redirectUri)
  currentUrl.search = callbackQuery.toString()
  try {
    const config = providerConfiguration(deps, provider)
    const response = await oidc.authorizationCodeGrant(config, currentUrl, { pkceCodeVerifier: flow.codeVerifier, expectedState: state, idTokenExpected: true })
    return { kind: 'identity', owner, identity: identityOf(response, provider, undefined, deps.now()) }
  } catch (error) {
    const failure = describeOAuthFailure(error, 'Sign-in could not be completed')
    return { kind: 'failed', status: failure.transient ? 502 : 400, owner, message: failure.message, oauthError: failure.oauthError }
  }
}

export type RenewedIdentity = { kind: 'identity'; identity: ProviderIdentity } | { kind: 'gone'; reason: string; oauthError?: string }

/**
 * Renews an identity with its refresh token (OpenID Connect Core §12): a new ID token, or `gone`
 * when the provider refused the refresh token for good or answered without an ID token (the user
 * signs in again). Throws for a failure that may pass (openid-client's errors; see describeOAuthFailure).
 */
export async function refreshProviderIdentity(
  deps: SignInDeps,
  provider: IdentityProvider,
  identity: ProviderIdentity & { refreshToken: string },
  signal: AbortSignal,
): Promise<RenewedIdentity> {
  const config = providerConfiguration(deps, provider)
  const send = config[oidc.customFetch]!
  config[oidc.customFetch] = (url, options) => send(url, { ...options, signal: options.signal ? AbortSignal.any([options.signal, signal]) : signal })
  let response: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>
  try {
    response = await oidc.refreshTokenGrant(config, identity.refreshToken)
  } catch (error) {
    const failure = describeOAuthFailure(error, 'The sign-in at the identity provider could not be renewed')
    if (!failure.transient && failure.oauthError !== undefined) return { kind: 'gone', reason: failure.message, oauthError: failure.oauthError }
    throw error
  }
  if (!response.id_token) return { kind: 'gone', reason: 'the identity provider renewed the sign-in without a new ID token' }
  const renewed = identityOf(response, provider, identity.refreshToken, deps.now())
  // OpenID Connect Core §12.2: a renewed ID token names the same subject.
  if (renewed.subject !== identity.subject) return { kind: 'gone', reason: 'the identity provider renewed the sign-in for another subject' }
  return { kind: 'identity', identity: renewed }
}

/** RFC 7009 at the provider: revokes the identity's refresh token (its grant). Throws openid-client's errors. */
export async function revokeProviderIdentity(deps: SignInDeps, provider: IdentityProvider, refreshToken: string, timeoutMs: number): Promise<void> {
  const config = providerConfiguration({ ...deps, timeoutMs }, provider)
  await oidc.tokenRevocation(config, refreshToken, { token_type_hint: 'refresh_token' })
}

function identityOf(
  response: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
  provider: IdentityProvider,
  previousRefreshToken: string | undefined,
  now: number,
): ProviderIdentity {
  const claims = response.claims()!
  return {
    idToken: response.id_token!,
    // A provider that does not rotate sends no new refresh token: the old one stays.
    refreshToken: response.refresh_token ?? previousRefreshToken,
    expiresAt: claims.exp * 1000,
    subject: claims.sub,
    // The provider as configured: what an identity is checked against before each use.
    issuer: provider.config.issuer,
    clientId: provider.client.clientId,
    obtainedAt: now,
  }
}
