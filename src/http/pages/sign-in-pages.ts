import type { RelayError, RelayErrorCode } from '../../errors.ts'
import type { Page } from './html-page.ts'

const CLOSE_HINT = 'You can close this window and go back to the chat.'

/**
 * The browser-facing routes, the callback per authorization server (`/oauth/callback/<tag>`,
 * oauth/redirect-uri.ts) included: their errors are HTML pages, not JSON, and their URLs are logged
 * without query or ticket.
 */
export function isBrowserPath(url: string): boolean {
  return url.startsWith('/oauth/start/') || url === '/oauth/callback' || url.startsWith('/oauth/callback?') || url.startsWith('/oauth/callback/')
}

/**
 * DESIGN.md §6: the login link's page names what will be connected, for whom, and asks the person
 * to go on only if they asked for it in their own chat (a link someone else sent would connect
 * their account to that someone's chat).
 */
export function confirmationPage(facts: { serverName: string; tenant: string; userId: string; csrfToken: string }): Page {
  return {
    tone: 'question',
    title: `Connect ${facts.serverName}?`,
    paragraphs: ['You are about to sign in and connect this account to an assistant chat:'],
    facts: [
      ['Server', facts.serverName],
      ['Workspace', facts.tenant],
      ['Chat user', shortUserId(facts.userId)],
    ],
    notes: [
      'Continue only if you asked for this yourself, in your own chat with the assistant.',
      'If someone sent you this link, close this page: continuing would let their chat use your account.',
    ],
    form: { csrfToken: facts.csrfToken, button: 'Continue to sign in' },
  }
}

/** Long ids (an email, a UUID, a signed id) are shortened to their ends: enough to recognise, not to copy. */
export function shortUserId(userId: string): string {
  return userId.length <= 24 ? userId : `${userId.slice(0, 12)}…${userId.slice(-8)}`
}

/** The callback's success page; with a confirmation code (SIGN_IN_CONFIRMATION=code) it shows the code to give the assistant. */
export function connectedPage(name: string, confirmationCode?: string): Page {
  if (confirmationCode === undefined) return { tone: 'success', title: 'Signed in', paragraphs: [`${name} is now connected.`, CLOSE_HINT] }
  return {
    tone: 'success',
    title: 'One more step',
    paragraphs: [`You signed in to ${name}. To finish, give the assistant this confirmation code in your chat:`],
    code: confirmationCode,
    notes: [
      'It works once, for 10 minutes. Give it only to your own chat with the assistant, never to a person or another site.',
      'Then you can close this window.',
    ],
  }
}

export function signInFailedPage(message: string): Page {
  return { tone: 'failure', title: 'Sign-in did not complete', paragraphs: [message, CLOSE_HINT] }
}

const ERROR_TITLES: Partial<Record<RelayErrorCode, string>> = {
  NOT_FOUND: 'This sign-in link does not work',
  FORBIDDEN: 'This sign-in was not confirmed',
  RATE_LIMITED: 'Too many attempts',
  STORE_UNAVAILABLE: 'The relay is unavailable',
}

/** A request error on a browser route; the message is a RelayError's (written to be shown) or a generic one. */
export function errorPage(error: RelayError): Page {
  const hint = error.code === 'RATE_LIMITED' || error.code === 'STORE_UNAVAILABLE' ? 'Wait a minute, then try again.' : CLOSE_HINT
  return { tone: 'failure', title: ERROR_TITLES[error.code] ?? 'Something went wrong', paragraphs: [error.message, hint] }
}
