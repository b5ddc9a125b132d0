import type { RelayError, RelayErrorCode } from '../../errors.ts'
import type { Page } from './html-page.ts'

const CLOSE_HINT = 'You can close this window and go back to the chat.'

/** The browser-facing routes: their errors are HTML pages, not JSON, and their URLs are logged without query or ticket. */
export function isBrowserPath(url: string): boolean {
  return url.startsWith('/oauth/start/') || url === '/oauth/callback' || url.startsWith('/oauth/callback?')
}

export function connectedPage(name: string): Page {
  return { tone: 'success', title: 'Signed in', paragraphs: [`${name} is now connected.`, CLOSE_HINT] }
}

export function signInFailedPage(message: string): Page {
  return { tone: 'failure', title: 'Sign-in did not complete', paragraphs: [message, CLOSE_HINT] }
}

const ERROR_TITLES: Partial<Record<RelayErrorCode, string>> = {
  NOT_FOUND: 'This sign-in link does not work',
  RATE_LIMITED: 'Too many attempts',
  STORE_UNAVAILABLE: 'The relay is unavailable',
}

/** A request error on a browser route; the message is a RelayError's (written to be shown) or a generic one. */
export function errorPage(error: RelayError): Page {
  const hint = error.code === 'RATE_LIMITED' || error.code === 'STORE_UNAVAILABLE' ? 'Wait a minute, then try again.' : CLOSE_HINT
  return { tone: 'failure', title: ERROR_TITLES[error.code] ?? 'Something went wrong', paragraphs: [error.message, hint] }
}
