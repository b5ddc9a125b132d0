import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'

/**
 * The browser's side of sign-in (DESIGN.md §6, RFC 9700 §4.7): one HttpOnly cookie per browser,
 * reused across sign-ins so two in parallel in one browser both work.
 * - The confirmation page's CSRF token is an HMAC of the ticket keyed with that cookie (a
 *   double-submit cookie, bound to the link): only a page this browser loaded can post the form,
 *   and SameSite=Lax keeps the cookie off a cross-site POST besides.
 * - The flow stores the cookie's SHA-256; the callback completes only with the same cookie.
 */
export const BROWSER_COOKIE = 'mcp_relay_browser'

/** As long as a login ticket lives, so a confirmation page left open for hours still works. */
const COOKIE_MAX_AGE_SECONDS = 24 * 60 * 60

const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/

/** The confirmation form's body (application/x-www-form-urlencoded). */
export const confirmationForm = z.object({ csrf: z.string().max(256) })

export interface BrowserBinding {
  /** The browser's cookie value, when it sent a well-formed one. */
  fromCookieHeader(header: string | undefined): string | undefined
  newValue(): string
  /** The Set-Cookie header value for `value`. */
  setCookie(value: string): string
  csrfToken(value: string, ticketId: string): string
  isCsrfToken(value: string | undefined, ticketId: string, given: string | undefined): boolean
  /** What the flow stores: SHA-256 (base64url) of the cookie value. */
  hash(value: string): string
}

/** `publicBaseUrl`: the cookie is Secure when it is https, and its path is the relay's /oauth under any prefix. */
export function createBrowserBinding(publicBaseUrl: string): BrowserBinding {
  const base = new URL(publicBaseUrl)
  const attributes = [
    `Path=${base.pathname.replace(/\/+$/, '')}/oauth`,
    `Max-Age=${COOKIE_MAX_AGE_SECONDS}`,
    'HttpOnly',
    'SameSite=Lax',
    ...(base.protocol === 'https:' ? ['Secure'] : []),
  ].join('; ')
  const csrfToken = (value: string, ticketId: string) => createHmac('sha256', value).update(`csrf\n${ticketId}`).digest('base64url')

  return {
    fromCookieHeader(header) {
      for (const pair of header?.split(';') ?? []) {
        const eq = pair.indexOf('=')
        if (eq === -1 || pair.slice(0, eq).trim() !== BROWSER_COOKIE) continue
        const value = pair.slice(eq + 1).trim()
        if (COOKIE_VALUE.test(value)) return value
      }
      return undefined
    },
    newValue: () => randomBytes(32).toString('base64url'),
    setCookie: (value) => `${BROWSER_COOKIE}=${value}; ${attributes}`,
    csrfToken,
    isCsrfToken(value, ticketId, given) {
      if (value === undefined || given === undefined) return false
      const expected = Buffer.from(csrfToken(value, ticketId))
      const actual = Buffer.from(given)
      return expected.length === actual.length && timingSafeEqual(expected, actual)
    },
    hash: (value) => createHash('sha256').update(value).digest('base64url'),
  }
}
