// A scripted browser for sign-in tests: fetch with `redirect: 'manual'` and a cookie jar, which
// walks login link → the relay's confirmation page (Continue: a POST with its CSRF token and
// cookie) → authorization endpoint → the peer's sign-in form → back to the client's redirect_uri,
// the way a person's browser does. Headless Chromium covers the real thing elsewhere.

export interface CookieJar {
  /** Cookie header value for a request to `url`, or undefined when no cookie applies. */
  header(url: URL): string | undefined
  /** Stores the Set-Cookie headers of a response to `url`. */
  store(url: URL, headers: Headers): void
}

interface StoredCookie {
  name: string
  value: string
  path: string
  expiresAt: number | undefined
}

/**
 * A cookie jar as a browser keeps one: host-only cookies keyed by host name (not port: browsers
 * share cookies across ports, so the relay and the authorization server on 127.0.0.1 do too),
 * RFC 6265 §5.1.4 path matching, Max-Age and Expires honoured.
 */
export function createCookieJar(): CookieJar {
  const byHost = new Map<string, Map<string, StoredCookie>>()

  return {
    header(url) {
      const cookies = byHost.get(url.hostname)
      if (!cookies) return undefined
      const now = Date.now()
      const matching = [...cookies.values()]
        .filter((c) => (c.expiresAt === undefined || c.expiresAt > now) && pathMatches(url.pathname, c.path))
        .sort((a, b) => b.path.length - a.path.length)
      return matching.length ? matching.map((c) => `${c.name}=${c.value}`).join('; ') : undefined
    },
    store(url, headers) {
      for (const line of headers.getSetCookie()) {
        const cookie = parseSetCookie(line, url)
        if (!cookie) continue
        let cookies = byHost.get(url.hostname)
        if (!cookies) byHost.set(url.hostname, (cookies = new Map()))
        const key = `${cookie.name};${cookie.path}`
        if (cookie.expiresAt !== undefined && cookie.expiresAt <= Date.now()) cookies.delete(key)
        else cookies.set(key, cookie)
      }
    },
  }
}

function parseSetCookie(line: string, url: URL): StoredCookie | undefined {
  const [pair = '', ...attributes] = line.split(';')
  const eq = pair.indexOf('=')
  if (eq <= 0) return undefined
  const cookie: StoredCookie = {
    name: pair.slice(0, eq).trim(),
    value: pair.slice(eq + 1).trim(),
    path: defaultPath(url.pathname),
    expiresAt: undefined,
  }
  let maxAge: number | undefined
  for (const attribute of attributes) {
    const [rawName = '', ...rest] = attribute.split('=')
    const name = rawName.trim().toLowerCase()
    const value = rest.join('=').trim()
    if (name === 'path' && value.startsWith('/')) cookie.path = value
    else if (name === 'max-age' && /^-?\d+$/.test(value)) maxAge = Number(value)
    else if (name === 'expires' && !Number.isNaN(Date.parse(value))) cookie.expiresAt = Date.parse(value)
  }
  // RFC 6265 §5.3 step 3: Max-Age wins over Expires.
  if (maxAge !== undefined) cookie.expiresAt = Date.now() + maxAge * 1000
  return cookie
}

// RFC 6265 §5.1.4
function defaultPath(pathname: string): string {
  const last = pathname.lastIndexOf('/')
  return last <= 0 ? '/' : pathname.slice(0, last)
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true
  if (!requestPath.startsWith(cookiePath)) return false
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/'
}

export interface BrowserOptions {
  /** Share cookies with later calls (e.g. to replay a callback as the same browser); default a fresh jar. */
  jar?: CookieJar
  /** Bound on each request; default 5000 ms. */
  timeoutMs?: number
  /** Headers added to every request (say, the X-Forwarded-For a proxy in front would add). */
  headers?: Record<string, string>
}

const MAX_HOPS = 20

/**
 * Opens `loginUrl`, presses Continue on the relay's confirmation page, and signs in at the
 * authorization server as `account`, following every redirect until the one that goes to the
 * client's redirect_uri (a URL carrying `code` or `error`), and returns that callback URL without
 * opening it. The callback completes only with the cookies of `options.jar` (the relay binds the
 * flow to this browser): pass a jar and open the URL with `openInBrowser`.
 * Throws when a page on the way is neither a redirect, the confirmation page nor the sign-in form.
 */
export async function followToCallback(loginUrl: string, account: string, options: BrowserOptions = {}): Promise<string> {
  const jar = options.jar ?? createCookieJar()
  const timeoutMs = options.timeoutMs ?? 5000
  let url = new URL(loginUrl)
  let method: 'GET' | 'POST' = 'GET'
  let body: URLSearchParams | undefined
  let signedIn = false
  let confirmed = false

  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const response = await request(url, jar, timeoutMs, method, body, options.headers)
    method = 'GET'
    body = undefined

    const location = response.headers.get('location')
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel()
      const next = new URL(location, url)
      if (isAuthorizationResponse(next)) return next.href
      url = next
      continue
    }

    const html = await response.text()
    const csrf = response.status === 200 && !confirmed ? findConfirmationToken(html) : undefined
    if (csrf !== undefined) {
      // The relay's confirmation page: its form posts back to the page's own URL.
      method = 'POST'
      body = new URLSearchParams({ csrf })
      confirmed = true
      continue
    }
    const formAction = response.status === 200 ? findLoginFormAction(html) : undefined
    if (!formAction || signedIn) {
      throw new Error(`sign-in stopped at ${response.status} ${url.href}: ${html.slice(0, 300)}`)
    }
    url = new URL(formAction, url)
    method = 'POST'
    body = new URLSearchParams({ login: account })
    signedIn = true
  }
  throw new Error(`sign-in did not reach the callback within ${MAX_HOPS} redirects`)
}

/**
 * The whole sign-in as a browser does it: followToCallback, then opens the callback URL with
 * the same cookies and returns the page it shows (without following any redirect from it).
 */
export async function signInThroughBrowser(
  loginUrl: string, account: string, options: BrowserOptions = {},
): Promise<{ status: number; html: string; headers: Headers; callbackUrl: string }> {
  const jar = options.jar ?? createCookieJar()
  const callbackUrl = await followToCallback(loginUrl, account, { ...options, jar })
  const response = await request(new URL(callbackUrl), jar, options.timeoutMs ?? 5000, 'GET', undefined, options.headers)
  return { status: response.status, html: await response.text(), headers: response.headers, callbackUrl }
}

/**
 * Opens a login link as a browser and presses Continue on the confirmation page: returns the
 * POST's answer (a 302 to the authorization endpoint when all is well), without following it.
 * Throws when the link does not answer the confirmation page.
 */
export async function pressContinue(loginUrl: string, options: BrowserOptions = {}): Promise<Response> {
  const jar = options.jar ?? createCookieJar()
  const timeoutMs = options.timeoutMs ?? 5000
  const url = new URL(loginUrl)
  const page = await request(url, jar, timeoutMs, 'GET', undefined, options.headers)
  const html = await page.text()
  const csrf = page.status === 200 ? findConfirmationToken(html) : undefined
  if (csrf === undefined) throw new Error(`no confirmation page at ${url.pathname}: ${page.status} ${html.slice(0, 300)}`)
  return request(url, jar, timeoutMs, 'POST', new URLSearchParams({ csrf }), options.headers)
}

/** The value of the cookie `name` that `jar` would send to `url`, if any. */
export function cookieValue(jar: CookieJar, url: string | URL, name: string): string | undefined {
  const pair = jar.header(new URL(url))?.split('; ').find((candidate) => candidate.startsWith(`${name}=`))
  return pair?.slice(name.length + 1)
}

/** A GET as the browser whose cookies `jar` holds (a callback URL, a page), not following redirects. */
export function openInBrowser(url: string, jar: CookieJar, timeoutMs = 5000): Promise<Response> {
  return request(new URL(url), jar, timeoutMs, 'GET', undefined)
}

/** The relay's confirmation page: a POST form carrying a hidden `csrf` field. */
export function findConfirmationToken(html: string): string | undefined {
  const form = /<form\b[^>]*\bmethod="post"[^>]*>[\s\S]*?<\/form>/i.exec(html)?.[0]
  const value = form && /<input\b[^>]*\bname="csrf"[^>]*\bvalue="([^"]*)"/i.exec(form)?.[1]
  return value === undefined || value === '' ? undefined : decodeHtml(value)
}

async function request(
  url: URL, jar: CookieJar, timeoutMs: number, method: 'GET' | 'POST', body: URLSearchParams | undefined, extra: Record<string, string> = {},
): Promise<Response> {
  const headers = new Headers({ ...extra, accept: 'text/html,application/xhtml+xml' })
  const cookie = jar.header(url)
  if (cookie) headers.set('cookie', cookie)
  if (body) headers.set('content-type', 'application/x-www-form-urlencoded')
  const response = await fetch(url, {
    method,
    headers,
    body: body?.toString(),
    redirect: 'manual',
    signal: AbortSignal.timeout(timeoutMs),
  })
  jar.store(url, response.headers)
  return response
}

// RFC 6749 §4.1.2: the authorization response carries `code` or `error` (with `state`); the
// authorization request itself carries `response_type`, which tells the two apart.
function isAuthorizationResponse(url: URL): boolean {
  const params = url.searchParams
  return (params.has('code') || params.has('error')) && !params.has('response_type')
}

// The peer's sign-in page: a POST form with an input named `login`.
function findLoginFormAction(html: string): string | undefined {
  const form = /<form\b[^>]*\bmethod="post"[^>]*>[\s\S]*?<\/form>/i.exec(html)?.[0]
  if (!form || !/\bname="login"/.test(form)) return undefined
  const action = /\baction="([^"]*)"/i.exec(form)?.[1]
  return action === undefined ? undefined : decodeHtml(action)
}

function decodeHtml(text: string): string {
  return text.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code))).replace(/&amp;/g, '&')
}
