import * as oidc from 'openid-client'
import { findRefusal } from './url-guard.ts'

/**
 * openid-client's errors, translated once (its own errorHandler() is the model): the OAuth
 * `error` code when the server gave one, a transient flag, and a sentence with no secret in it.
 */
export interface OAuthFailure {
  readonly oauthError: string | undefined
  /** Network trouble, timeouts, 5xx, 429: worth trying again later, keep the tokens. */
  readonly transient: boolean
  readonly message: string
}

export function describeOAuthFailure(error: unknown, action: string): OAuthFailure {
  // The SSRF guard refused the endpoint (DESIGN.md §6), at check or at connect time. Transient:
  // a name that rebinds now may resolve as it should later, and a refresh keeps the tokens.
  const refusal = findRefusal(error)
  if (refusal) return { oauthError: undefined, transient: true, message: `${action}: ${refusal.message}` }
  if (error instanceof oidc.ResponseBodyError) {
    const transient = error.status >= 500 || error.status === 429
    return { oauthError: error.error, transient, message: `${action}: the authorization server answered ${error.error} (HTTP ${error.status})` }
  }
  if (error instanceof oidc.AuthorizationResponseError) {
    return { oauthError: error.error, transient: false, message: `${action}: the authorization server answered ${error.error}` }
  }
  if (error instanceof oidc.WWWAuthenticateChallengeError) {
    return { oauthError: 'invalid_client', transient: false, message: `${action}: the authorization server refused the client (HTTP ${error.status})` }
  }
  if (error instanceof oidc.ClientError) {
    // A response that fails openid-client's checks (state, iss, malformed JSON). The detail is in
    // `cause`; a non-JSON 5xx also lands here.
    const status = statusOf(error.cause)
    const transient = status !== undefined && (status >= 500 || status === 429)
    return { oauthError: undefined, transient, message: `${action}: ${transient ? `the authorization server answered HTTP ${status}` : `the authorization server's response was rejected (${error.code ?? 'invalid response'})`}` }
  }
  const name = error instanceof Error ? error.name : 'error'
  return { oauthError: undefined, transient: true, message: `${action}: the authorization server could not be reached (${name})` }
}

function statusOf(cause: unknown): number | undefined {
  if (cause instanceof Response) return cause.status
  return undefined
}
