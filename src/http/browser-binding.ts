import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'

/**
 * The browser's side of sign-in (DESIGN.md §6, RFC 9700 §4.7): one HttpOnly cookie per browser,
 * reused across sign-ins so two in parallel in one browser both work.
 * - On an https relay the cookie is `__Host-`-prefixed (RFC 6265bis §4.1.3.2: Secure, Path=/, no
 *   Domain): a sibling subdomain, which can set cookies for the whole site, cannot set this one,
 *   so it cannot plant a value it knows.
 * - The confirmation page's CSRF token is an HMAC, under a key only the relay holds, of the
 *   ticket and the cookie value: only a page the relay rendered for this browser and this link
 *   can post the form. Keyed by the cookie alone, anyone who planted a known cookie could compute
 *   the token for it.
 * - The flow stores the cookie's SHA-256; the callback completes only with the same cookie.
 * The POST also checks Sec-Fetch-Site (routes/sign-in.ts).
 */
export const BROWSER_COOKIE = 'mcp_relay_browser'
/** The cookie's name on an https relay. */
export const HOST_BROWSER_COOKIE = `__Host-${BROWSER_COOKIE}`

/** As long as a login ticket lives, so a confirmation page left open for hours still works. */
const COOKIE_MAX_AGE_SECONDS = 24 * 60 * 60

const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/

/** The confirmation form's body (application/x-www-form-urlencoded). */
export const confirmationForm = z.object({ csrf: z.string().max(256) })

export interface BrowserBinding {
  /** `__Host-mcp_relay_browser` on https, `mcp_relay_browser` on plain http. */
  readonly cookieName: string
  /** The browser's cookie value, when it sent a well-formed one under cookieName. */
  fromCookieHeader(header: string | undefined): string | undefined
  newValue(): string
  /** The Set-Cookie header value for `value`. */
  setCookie(value: string): string
  csrfToken(value: string, ticketId: string): string
  isCsrfToken(value: string | undefined, ticketId: string, given: string | undefined): boolean
  /** What the flow stores: SHA-256 (base64url) of the cookie value. */
  hash(value: string): string
}

/**
 * `publicBaseUrl`: on https the cookie is `__Host-` with Path=/ (the prefix demands it, even
 * under a path prefix); on http it keeps its old name and the relay's /oauth path.
 * `keys`: the CSRF token's HMAC keys (relay/create-relay.ts, derived from the encryption keys so
 * every replica shares them): the first signs, every one verifies, so a page rendered before a
 * key rotation still posts.
 */
export function createBrowserBinding(publicBaseUrl: string, keys: readonly Buffer[]): BrowserBinding {
  if (keys.length === 0) throw new Error('createBrowserBinding needs at least one key')
  const base = new URL(publicBaseUrl)
  const secure = base.protocol === 'https:'
  const cookieName = secure ? HOST_BROWSER_COOKIE : BROWSER_COOKIE
  const attributes = [
    `Path=${secure ? '/' : `${base.pathname.replace(/\/+$/, '')}/oauth`}`,
    `Max-Age=${COOKIE_MAX_AGE_SECONDS}`,
    'HttpOnly',
    'SameSite=Lax',
    ...(secure ? ['Secure'] : []),
  ].join('; ')
  const tokenUnder = (key: Buffer, value: string, ticketId: string) =>
    createHmac('sha256', key).update(`csrf\n${ticketId}\n${value}`).digest('base64url')

  return {
    cookieName,
    fromCookieHeader(header) {
      for (const pair of header?.split(';') ?? []) {
        const eq = pair.indexOf('=')
        if (eq === -1 || pair.slice(0, eq).trim() !== cookieName) continue
        const value = pair.slice(eq + 1).trim()
        if (COOKIE_VALUE.test(value)) return value
      }
      return undefined
    },
    newValue: () => randomBytes(32).toString('base64url'),
    setCookie: (value) => `${cookieName}=${value}; ${attributes}`,
    csrfToken: (value, ticketId) => tokenUnder(keys[0]!, value, ticketId),
    isCsrfToken(value, ticketId, given) {
      if (value === undefined || given === undefined) return false
      const actual = Buffer.from(given)
      return keys.some((key) => {
        const expected = Buffer.from(tokenUnder(key, value, ticketId))
        return expected.length === actual.length && timingSafeEqual(expected, actual)
      })
    },
    hash: (value) => createHash('sha256').update(value).digest('base64url'),
  }
}
