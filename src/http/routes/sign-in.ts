import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import { RelayError } from '../../errors.ts'
import type { RelayService } from '../../relay/types.ts'
import { sendPage } from '../pages/html-page.ts'
import { connectedPage, signInFailedPage } from '../pages/sign-in-pages.ts'

export interface SignInRoutesOptions {
  relay: RelayService
  /** $PUBLIC_BASE_URL, no trailing slash. */
  publicBaseUrl: string
  /** Requests per IP per window on /oauth/start and /oauth/callback. */
  rateLimit: { max: number; timeWindowMs: number }
}

/**
 * The browser's half of sign-in (DESIGN.md §5, "The sign-in flow"): the login link redirects to
 * the authorization server, which sends the browser back to the callback. Both answer HTML.
 */
export async function signInRoutes(fastify: FastifyInstance, options: SignInRoutesOptions): Promise<void> {
  const { relay, publicBaseUrl } = options

  await fastify.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_request, context) =>
      new RelayError('RATE_LIMITED', `There were too many sign-in requests from this address; try again in ${context.after}.`),
  })
  const limited = { rateLimit: { max: options.rateLimit.max, timeWindow: options.rateLimit.timeWindowMs } }

  fastify.get<{ Params: { ticket: string } }>('/oauth/start/:ticket', { config: limited }, async (request, reply) => {
    const result = await relay.startSignIn(request.params.ticket)
    if (result.kind === 'invalid') throw new RelayError('NOT_FOUND', result.message)
    // no-referrer: the authorization server must not learn the ticket from the Referer header.
    return reply.headers({ 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' }).redirect(result.url, 302)
  })

  fastify.get('/oauth/callback', { config: limited }, async (request, reply) => {
    // openid-client derives redirect_uri from this URL, so it must be the public one (FIELD-NOTES.md):
    // PUBLIC_BASE_URL may carry a path prefix that a proxy stripped from request.url.
    const queryStart = request.url.indexOf('?')
    const query = queryStart === -1 ? '' : request.url.slice(queryStart)
    const result = await relay.completeSignIn(new URL(`${publicBaseUrl}/oauth/callback${query}`))
    if (result.kind === 'connected') {
      request.log.info({ serverId: result.serverId }, 'sign-in completed')
      return sendPage(reply, 200, connectedPage(result.description || result.serverId))
    }
    request.log.info({ status: result.status }, 'sign-in failed')
    return sendPage(reply, result.status, signInFailedPage(result.message))
  })

  fastify.get('/oauth/client-metadata.json', async (_request, reply) => {
    reply.header('cache-control', 'public, max-age=300')
    return relay.clientMetadataDocument()
  })
}
