import { createHmac, hash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ApiKey } from '../config/load-config.ts'
import { RelayError } from '../errors.ts'
import type { Caller } from '../relay/types.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant named by the request's API key; set on the API-key routes only. */
    tenant: string
    /** The position of the request's key in RELAY_ADMIN_KEYS (1-based); set on the /admin routes only. */
    adminKey: number
  }
}

export interface Identity {
  /** The tenant whose API key is in the Authorization header (`Bearer <key>`, `Basic <key>` or the bare key); throws RelayError UNAUTHORIZED. */
  tenantOf(authorization: string | undefined): string
  /**
   * The user the request speaks for: `user_id` itself or, when a user secret is configured, the
   * id inside a signed `user_id`. Throws RelayError UNAUTHORIZED for a bad or expired signature.
   */
  userIdOf(userId: string): string
  /**
   * The position (1-based) in RELAY_ADMIN_KEYS of the admin key in the Authorization header (the same forms);
   * throws RelayError UNAUTHORIZED, in the same words as tenantOf, so that neither kind of route
   * tells a caller whether its key is a key of the other kind.
   */
  adminKeyOf(authorization: string | undefined): number
}

// One-shot crypto.hash: a Hash object per request cost 5-8 µs of a cached list-tools.
const sha256 = (text: string) => hash('sha256', text, 'buffer')
const sign = (secret: string, payload: string) => createHmac('sha256', secret).update(payload).digest()
const SIGNED_FORMAT = 'user_id: must be a signed user id (<id>.<expiry>.<signature>)'

const MISSING_KEY = 'an API key is required: send "Authorization: Bearer <key>"'
const WRONG_KEY = 'the API key is not valid'

/**
 * The key in an Authorization header, in each form Dify's API-key credential sends it (its
 * prefixes Bearer, Basic and Custom: api/core/tools/custom_tool/tool.py writes `Bearer <key>`,
 * `Basic <key>` or the key alone): `Bearer <key>`, `Basic <key>`, or a value that is one token
 * (the bare key). The key is compared as it is: a Basic value is never base64-decoded, so HTTP
 * Basic credentials (`base64(user:pass)`) match no key, whatever they decode to.
 */
function presentedKey(authorization: string | undefined): string | undefined {
  const value = (authorization ?? '').trim()
  const scheme = /^(?:Bearer|Basic)(?:[ \t]+(\S+))?$/i.exec(value)
  if (scheme) return scheme[1]
  return /^\S+$/.test(value) ? value : undefined
}

/** `now` returns milliseconds since the epoch. */
export function createIdentity(deps: {
  apiKeys: readonly ApiKey[]
  adminKeys?: readonly string[]
  userSecret: string | undefined
  now: () => number
}): Identity {
  // Hashing both sides gives equal lengths for timingSafeEqual and hides the key's length.
  const keys = deps.apiKeys.map((apiKey) => ({ tenant: apiKey.tenant, digest: sha256(apiKey.key) }))
  const adminKeys = (deps.adminKeys ?? []).map((key, index) => ({ number: index + 1, digest: sha256(key) }))
  const { userSecret, now } = deps

  /** The entry whose key was presented; compares against every key, without stopping at a match, so timing says nothing about which. */
  function match<K extends { digest: Buffer }>(authorization: string | undefined, candidates: readonly K[]): K {
    const presented = presentedKey(authorization)
    if (presented === undefined) throw new RelayError('UNAUTHORIZED', MISSING_KEY)
    const digest = sha256(presented)
    let found: K | undefined
    for (const candidate of candidates) {
      if (timingSafeEqual(digest, candidate.digest)) found ??= candidate
    }
    if (found === undefined) throw new RelayError('UNAUTHORIZED', WRONG_KEY)
    return found
  }

  const tenantOf = (authorization: string | undefined) => match(authorization, keys).tenant
  const adminKeyOf = (authorization: string | undefined) => match(authorization, adminKeys).number

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

  return { tenantOf, userIdOf, adminKeyOf }
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

/** Requires an admin key (RELAY_ADMIN_KEYS) on every route of this (encapsulated) plugin, before the body is read. */
export function requireAdminKey(fastify: FastifyInstance, identity: Identity): void {
  fastify.decorateRequest('adminKey', 0)
  fastify.addHook('onRequest', async (request, reply) => {
    request.adminKey = identity.adminKeyOf(request.headers.authorization)
    request.log = request.log.child({ adminKey: request.adminKey })
    reply.log = request.log
  })
}

export function callerOf(request: FastifyRequest, identity: Identity, userId: string): Caller {
  return { tenant: request.tenant, userId: identity.userIdOf(userId) }
}
