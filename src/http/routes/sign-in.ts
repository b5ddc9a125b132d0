import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { RelayError } from '../../errors.ts'
import type { RelayService } from '../../relay/types.ts'
import { rateLimitKey } from '../client-address.ts'
import { confirmationForm, createBrowserBinding } from '../browser-binding.ts'
import { sendPage } from '../pages/html-page.ts'
import { confirmationPage, connectedPage, signInFailedPage } from '../pages/sign-in-pages.ts'

export interface SignInRoutesOptions {
  relay: RelayService
  /** $PUBLIC_BASE_URL, no trailing slash. */
  publicBaseUrl: string
  /** Requests per client address (an IPv6 one per /64) per window on /oauth/start and /oauth/callback. */
  rateLimit: { max: number; timeWindowMs: number }
  /** The confirmation form's CSRF keys (browser-binding.ts): the first signs, all verify. */
  signInKeys: readonly Buffer[]
}

/**
 * Fetch Metadata (W3C, Sec-Fetch-Site; DESIGN.md §6): Continue is pressed on the relay's own page
 * (`same-origin`), or the user sent the request themselves (`none`). A form another site posts
 * says `cross-site`, one on a sibling subdomain `same-site`: both refused. Browsers that predate
 * the header send none; the CSRF token alone guards them.
 */
function isFromRelayPage(site: string | string[] | undefined): boolean {
  return site === undefined || site === 'same-origin' || site === 'none'
}

/** The confirmation form is a few hundred bytes. */
const FORM_BODY_LIMIT_BYTES = 4096

/**
 * The browser's half of sign-in (DESIGN.md §5, "The sign-in flow"; §6): the login link shows a
 * confirmation page, its form posts back and is redirected to the authorization server, which
 * sends the browser back to the callback. All answer HTML.
 */
export async function signInRoutes(fastify: FastifyInstance, options: SignInRoutesOptions): Promise<void> {
  const { relay, publicBaseUrl } = options
  const binding = createBrowserBinding(publicBaseUrl, options.signInKeys)

  await fastify.register(rateLimit, {
    global: false,
    // Per client (TRUST_PROXY), an IPv6 client per /64 (client-address.ts).
    keyGenerator: (request) => rateLimitKey(request.ip),
    errorResponseBuilder: (_request, context) =>
      new RelayError('RATE_LIMITED', `There were too many sign-in requests from this address; try again in ${context.after}.`),
  })
  const limited = { rateLimit: { max: options.rateLimit.max, timeWindow: options.rateLimit.timeWindowMs } }
  // The confirmation page's form; in this plugin only, so the tool routes still take JSON alone.
  fastify.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT_BYTES },
    (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  )

  // GET (and HEAD) change nothing: a link preview, a mail scanner or a second click sees the page
  // and leaves the ticket live. Only the browser cookie is set, if the browser has none yet.
  fastify.get<{ Params: { ticket: string } }>('/oauth/start/:ticket', { config: limited }, async (request, reply) => {
    const { ticket } = request.params
    const result = await relay.describeSignIn(ticket)
    if (result.kind === 'invalid') throw new RelayError('NOT_FOUND', result.message)
    let browser = binding.fromCookieHeader(request.headers.cookie)
    if (!browser) {
      browser = binding.newValue()
      reply.header('set-cookie', binding.setCookie(browser))
    }
    return sendPage(reply, 200, confirmationPage({ ...result, csrfToken: binding.csrfToken(browser, ticket) }))
  })

  fastify.post<{ Params: { ticket: string } }>('/oauth/start/:ticket', { config: limited }, async (request, reply) => {
    const { ticket } = request.params
    const browser = binding.fromCookieHeader(request.headers.cookie)
    const form = confirmationForm.safeParse(request.body)
    // Not the Origin header: with Referrer-Policy no-referrer browsers send `Origin: null` on this
    // same-origin POST (FIELD-NOTES.md, 2026-11-27). The token is what only this browser's page holds.
    const fromRelayPage = isFromRelayPage(request.headers['sec-fetch-site'])
    const result = fromRelayPage && browser && form.success && binding.isCsrfToken(browser, ticket, form.data.csrf)
      ? await relay.startSignIn(ticket, { csrfValid: true, browserHash: binding.hash(browser) })
      : await relay.startSignIn(ticket, { csrfValid: false })
    if (result.kind === 'refused') throw new RelayError('FORBIDDEN', result.message)
    if (result.kind === 'invalid') throw new RelayError('NOT_FOUND', result.message)
    // no-referrer: the authorization server must not learn the ticket from the Referer header.
    return reply
      .headers({ 'cache-control': 'no-store', 'referrer-policy': 'no-referrer', 'set-cookie': binding.setCookie(browser!) })
      .redirect(result.url, 302)
  })

  // The plain callback, and one per authorization server that does not identify itself in its
  // responses (RFC 9700 §4.4.2; oauth/redirect-uri.ts).
  const callback = async (request: FastifyRequest<{ Params: { tag?: string } }>, reply: FastifyReply) => {
    // openid-client derives redirect_uri from this URL, so it must be the public one (FIELD-NOTES.md):
    // PUBLIC_BASE_URL may carry a path prefix that a proxy stripped from request.url.
    const queryStart = request.url.indexOf('?')
    const query = queryStart === -1 ? '' : request.url.slice(queryStart)
    const tag = request.params.tag ? `/${encodeURIComponent(request.params.tag)}` : ''
    const browser = binding.fromCookieHeader(request.headers.cookie)
    const result = await relay.completeSignIn(new URL(`${publicBaseUrl}/oauth/callback${tag}${query}`), browser && binding.hash(browser))
    if (result.kind === 'connected') {
      request.log.info({ serverId: result.serverId }, 'sign-in completed')
      return sendPage(reply, 200, connectedPage(result.description || result.serverId, result.confirmationCode))
    }
    request.log.info({ status: result.status }, 'sign-in failed')
    return sendPage(reply, result.status, signInFailedPage(result.message))
  }
  fastify.get('/oauth/callback', { config: limited }, callback)
  fastify.get('/oauth/callback/:tag', { config: limited }, callback)

  fastify.get('/oauth/client-metadata.json', async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300')
    return relay.clientMetadataDocument()
  })
}
