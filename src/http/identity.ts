import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ApiKey } from '../config/load-config.ts'
import { RelayError } from '../errors.ts'
import type { Caller } from '../relay/types.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant named by the request's API key; set on the API-key routes only. */
    tenant: string
  }
}

export interface Identity {
  /** The tenant whose API key is in `Authorization: Bearer <key>`; throws RelayError UNAUTHORIZED. */
  tenantOf(authorization: string | undefined): string
  /**
   * The user the request speaks for: `user_id` itself or, when a user secret is configured, the
   * id inside a signed `user_id`. Throws RelayError UNAUTHORIZED for a bad or expired signature.
   */
  userIdOf(userId: string): string
}

const sha256 = (text: string) => createHash('sha256').update(text).digest()
const sign = (secret: string, payload: string) => createHmac('sha256', secret).update(payload).digest()
const SIGNED_FORMAT = 'user_id: must be a signed user id (<id>.<expiry>.<signature>)'

/** `now` returns milliseconds since the epoch. */
export function createIdentity(deps: { apiKeys: readonly ApiKey[]; userSecret: string | undefined; now: () => number }): Identity {
  // Hashing both sides gives equal lengths for timingSafeEqual and hides the key's length.
  const keys = deps.apiKeys.map((apiKey) => ({ tenant: apiKey.tenant, digest: sha256(apiKey.key) }))
  const { userSecret, now } = deps

  function tenantOf(authorization: string | undefined): string {
    const presented = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '')?.[1]
    if (presented === undefined) {
      throw new RelayError('UNAUTHORIZED', 'an API key is required: send "Authorization: Bearer <key>"')
    }
    const digest = sha256(presented)
    let tenant: string | undefined
    // Compare against every key, without stopping at a match, so timing says nothing about which.
    for (const key of keys) {
      if (timingSafeEqual(digest, key.digest)) tenant ??= key.tenant
    }
    if (tenant === undefined) throw new RelayError('UNAUTHORIZED', 'the API key is not valid')
    return tenant
  }

  function userIdOf(userId: string): string {
    if (userSecret === undefined) return userId
    // The id may contain dots: the expiry and signature are the last two parts.
    const signatureDot = userId.lastIndexOf('.')
    const expiryDot = userId.lastIndexOf('.', signatureDot - 1)
    if (expiryDot <= 0) throw new RelayError('UNAUTHORIZED', SIGNED_FORMAT)
    const id = userId.slice(0, expiryDot)
    const expiry = userId.slice(expiryDot + 1, signatureDot)
    if (!/^\d{1,12}$/.test(expiry)) throw new RelayError('UNAUTHORIZED', SIGNED_FORMAT)
    const expected = sign(userSecret, `${id}.${expiry}`)
    const given = Buffer.from(userId.slice(signatureDot + 1), 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new RelayError('UNAUTHORIZED', 'user_id: the signature is not valid')
    }
    if (Number(expiry) * 1000 <= now()) {
      throw new RelayError('UNAUTHORIZED', 'user_id: the signed user id has expired; the app must issue a new one')
    }
    return id
  }

  return { tenantOf, userIdOf }
}

/**
 * Signs a user id for the `RELAY_USER_SECRET` mode: `<id>.<expiry-unix-seconds>.<base64url
 * HMAC-SHA256(secret, "<id>.<expiry>")>`. `now` is in milliseconds since the epoch.
 */
export function signUserId(secret: string, id: string, ttlSeconds: number, now: number = Date.now()): string {
  const expiry = Math.floor(now / 1000) + Math.floor(ttlSeconds)
  return `${id}.${expiry}.${sign(secret, `${id}.${expiry}`).toString('base64url')}`
}

/** Requires the API key on every route of this (encapsulated) plugin, before the body is read. */
export function requireApiKey(fastify: FastifyInstance, identity: Identity): void {
  fastify.decorateRequest('tenant', '')
  fastify.addHook('onRequest', async (request, reply) => {
    request.tenant = identity.tenantOf(request.headers.authorization)
    // The rest of this request's lines (including "request completed") name the tenant.
    request.log = request.log.child({ tenant: request.tenant })
    reply.log = request.log
  })
}

export function callerOf(request: FastifyRequest, identity: Identity, userId: string): Caller {
  return { tenant: request.tenant, userId: identity.userIdOf(userId) }
}
