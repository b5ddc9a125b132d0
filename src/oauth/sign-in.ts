import * as oidc from 'openid-client'
import type { DpopMode, ServerConfig } from '../config/load-config.ts'
import type { FlowStore } from '../store/flows.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { createClientConfiguration } from './client-config.ts'
import { DiscoveryError, type ServerAuth } from './discovery.ts'
import { dpopOptions, newGrantKey } from './dpop.ts'
import { describeOAuthFailure } from './oauth-errors.ts'
import type { ClientRegistration } from './registration.ts'
import { toUpstreamToken } from './tokens-from-response.ts'
import type { FetchLike, UrlGuard } from './url-guard.ts'

export interface SignInDeps {
  /** $PUBLIC_BASE_URL/oauth/callback: the redirect URIs the relay hands out start with it (redirect-uri.ts). */
  readonly callbackUrl: string
  readonly fetch: FetchLike
  readonly guard: UrlGuard
  readonly timeoutMs: number
  readonly flows: FlowStore
  readonly now: () => number
}

/**
 * The browser pressed Continue on the confirmation page: create `state` and the PKCE verifier,
 * store the flow for 10 minutes bound to that browser (`browserHash`), and return the
 * authorization URL (DESIGN.md §5, step 2).
 */
export async function beginSignIn(
  deps: SignInDeps,
  request: {
    owner: TokenOwner
    server: ServerConfig
    auth: ServerAuth
    client: ClientRegistration
    redirectUri: string
    scope: string | undefined
    browserHash: string
  },
): Promise<URL> {
  const config = createClientConfiguration(deps, request.auth, request.client)
  const codeVerifier = oidc.randomPKCECodeVerifier()
  const state = oidc.randomState()
  await deps.flows.start(state, {
    ...request.owner,
    codeVerifier,
    redirectUri: request.redirectUri,
    resource: request.auth.resource,
    scope: request.scope,
    issuer: request.auth.metadata.issuer,
    clientId: request.client.clientId,
    browserHash: request.browserHash,
  })
  const parameters: Record<string, string> = {
    redirect_uri: request.redirectUri,
    response_type: 'code',
    // MCP 2025-11-25 "Authorization Code Protection": PKCE with S256, always.
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    // RFC 8707 §2: the canonical server URI, on every authorization and token request.
    resource: request.auth.resource,
  }
  if (request.scope) parameters.scope = request.scope
  return oidc.buildAuthorizationUrl(config, parameters)
}

export type FinishSignInResult =
  | { kind: 'token'; owner: TokenOwner; serverId: string; token: UpstreamToken }
  | {
      kind: 'failed'
      status: 400 | 502
      message: string
      /** The token endpoint's OAuth error code. */
      oauthError?: string
      /** The authorization response's `error`, as the browser brought it (anyone can forge one). */
      callbackError?: string
      owner?: TokenOwner
      /**
       * `cookie`: a live flow, but not this browser's; it was left for the browser that started it.
       * `redirect`: the response came back to another redirect URI than its flow's (a mix-up).
       */
      refused?: 'cookie' | 'redirect'
    }

/**
 * RFC 9700 §4.7 (login CSRF): a callback URL carried to another browser signs nobody in, and the
 * flow stays for the browser that pressed Continue (a server's sign-in and the provider's alike).
 */
export function startedInAnotherBrowser(owner: TokenOwner): { kind: 'failed'; status: 400; owner: TokenOwner; refused: 'cookie'; message: string } {
  return {
    kind: 'failed',
    status: 400,
    owner,
    refused: 'cookie',
    message: 'This sign-in was started in another browser. Finish it in the browser where you pressed Continue, or ask the assistant for a new link.',
  }
}

/**
 * The authorization server sent the browser back to `arrivedAt` (the redirect URI it used, with
 * the response in its query): take the flow by `state` and the browser's binding cookie (once),
 * check that the response came back to the flow's own redirect URI (RFC 9700 §4.4.2: a response
 * for another authorization server's flow is refused, redirect-uri.ts), then let openid-client
 * check `state` and RFC 9207 `iss` and exchange the code with the verifier and `resource`. An
 * `error` response is shown only once its `iss` passed the same check (MCP 2026-07-28,
 * "Authorization Response Validation": on a mismatch it must not be acted on or shown).
 * `findServer` gives the current config and discovery for the flow's server.
 */
export async function finishSignIn(
  deps: SignInDeps,
  arrivedAt: URL,
  browserHash: string | undefined,
  findServer: (serverId: string) => Promise<{ auth: ServerAuth; client: ClientRegistration; dpop: DpopMode } | undefined>,
): Promise<FinishSignInResult> {
  const callbackQuery = arrivedAt.searchParams
  const state = callbackQuery.get('state')
  if (!state) return { kind: 'failed', status: 400, message: 'This page needs the sign-in response from the authorization server (state is missing).' }
  const taken = await deps.flows.take(state, browserHash)
  if (taken.kind === 'other-browser') return startedInAnotherBrowser(taken.owner)
  if (taken.kind === 'none') {
    return { kind: 'failed', status: 400, message: 'This sign-in link has expired or was already used. Ask the assistant for a new link.' }
  }
  const { flow } = taken
  const owner: TokenOwner = { tenant: flow.tenant, userId: flow.userId, serverId: flow.serverId }
  if (!isAnsweredAtItsRedirectUri(arrivedAt, flow.redirectUri, deps.callbackUrl)) {
    return {
      kind: 'failed',
      status: 400,
      owner,
      refused: 'redirect',
      message: 'This sign-in response came back for another authorization server than the one the sign-in was started with, so it was refused. Ask the assistant for a new link.',
    }
  }
  const server = await findServer(flow.serverId)
  if (!server || server.client.clientId !== flow.clientId || server.auth.metadata.issuer !== flow.issuer) {
    return { kind: 'failed', status: 400, owner, message: 'The server configuration changed during sign-in. Ask the assistant for a new link.' }
  }
  const config = createClientConfiguration(deps, server.auth, server.client)
  // openid-client derives redirect_uri from this URL's origin and path (FIELD-NOTES), so it is
  // built from the redirect URI the flow used, not from the request's Host header.
  const currentUrl = new URL(flow.redirectUri)
  currentUrl.search = callbackQuery.toString()
  try {
    // RFC 9449 §5: a DPoP-bound grant, with a key pair of its own, where the server offers it.
    const dpopKey = await newGrantKey(server.dpop, server.auth.metadata)
    const response = await oidc.authorizationCodeGrant(
      config,
      currentUrl,
      { pkceCodeVerifier: flow.codeVerifier, expectedState: state, idTokenExpected: false },
      { resource: flow.resource },
      await dpopOptions(config, dpopKey),
    )
    const token = toUpstreamToken(response, {
      issuer: flow.issuer,
      clientId: flow.clientId,
      resource: flow.resource,
      requestedScope: flow.scope,
      now: deps.now(),
      dpopKey,
    })
    return { kind: 'token', owner, serverId: flow.serverId, token }
  } catch (error) {
    if (error instanceof oidc.AuthorizationResponseError) {
      // `state` and `iss` passed; the error is the authorization server's own. Shown and logged,
      // never acted on: an `invalid_client` put here by hand would otherwise make the relay
      // forget its client registration, and every user of the server would be signed out.
      return { kind: 'failed', status: 400, owner, callbackError: error.error, message: `Sign-in was not completed: ${error.error_description || error.error}` }
    }
    if (error instanceof DiscoveryError) return { kind: 'failed', status: 400, owner, message: `Sign-in could not be completed: ${error.message}` }
    const failure = describeOAuthFailure(error, 'Sign-in could not be completed')
    return { kind: 'failed', status: failure.transient ? 502 : 400, owner, message: failure.message, oauthError: failure.oauthError }
  }
}

/**
 * Whether the response came to the flow's redirect URI: the same URL, or for a flow whose redirect
 * URI is not the relay's own (an operator's `redirect_uri`, routed to the relay by a proxy), the
 * plain callback. Compared as URLs (PUBLIC_BASE_URL may be written with capitals or a default port).
 */
function isAnsweredAtItsRedirectUri(arrivedAt: URL, redirectUri: string, callbackUrl: string): boolean {
  const arrived = withoutQuery(arrivedAt)
  const expected = withoutQuery(new URL(redirectUri))
  if (arrived === expected) return true
  const plain = withoutQuery(new URL(callbackUrl))
  return arrived === plain && expected !== plain && !expected.startsWith(`${plain}/`)
}

function withoutQuery(url: URL): string {
  return `${url.origin}${url.pathname}`
}
