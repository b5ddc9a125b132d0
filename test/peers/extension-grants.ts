// The grants of MCP's authorization extensions, registered on the peer oidc-provider
// (startAuthorizationServer's `extend`):
// - at an enterprise identity provider, RFC 8693 token exchange of the user's ID token for an
//   Identity Assertion JWT Authorization Grant (ID-JAG, draft-ietf-oauth-identity-assertion-authz-grant:
//   typ oauth-id-jag+jwt; iss the provider, sub the user, aud the MCP server's authorization
//   server, client_id the client there, resource the MCP server, jti, iat, exp);
// - at an MCP server's authorization server, the RFC 7523 JWT bearer grant redeeming an ID-JAG
//   (or a workload's own JWT, workload identity federation) for an access token, DPoP-bound when
//   the request carries a proof (oidc-provider's own checks, nonces included).
import { createPublicKey, randomUUID, type KeyObject } from 'node:crypto'
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, importJWK, jwtVerify, SignJWT, type JWTPayload } from 'jose'
import type Provider from 'oidc-provider'
import { errors, type KoaContextWithOIDC } from 'oidc-provider'
import { buildTokenResponse, checkDpopReplay, resolveRequestedResources, validateDpop } from 'oidc-provider/lib/helpers/grants.js'
import { getSigningKey } from './authorization-server.ts'

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token'
export const ID_JAG_TYPE = 'urn:ietf:params:oauth:token-type:id-jag'

export interface ExchangeRecord {
  audience: string | undefined
  resource: string | undefined
  subject: string | undefined
  ok: boolean
  error?: string
}

export interface IdJagIssuer {
  extend(provider: Provider): void
  /** Every token exchange request, in order. */
  exchanges: ExchangeRecord[]
  /** While set, exchanges for which it returns an error are refused with it (the provider's policy). */
  refuse(policy: ((exchange: { subject: string; audience: string; resource: string }) => { error: string; description: string } | undefined) | undefined): void
}

/**
 * RFC 8693 §2 token exchange at the identity provider: `subject_token` must be an ID token this
 * provider issued to the requesting client and still valid; `audience` names the authorization
 * server, which must be one `clientIds` knows (the client the relay is there).
 */
export function idJagIssuer(options: { clientIds: Record<string, string> }): IdJagIssuer {
  const exchanges: ExchangeRecord[] = []
  let policy: Parameters<IdJagIssuer['refuse']>[0]
  return {
    exchanges,
    refuse: (next) => {
      policy = next
    },
    extend(provider) {
      const handler = async (ctx: KoaContextWithOIDC) => {
        const params = ctx.oidc.params as Record<string, string | undefined>
        const record: ExchangeRecord = { audience: params.audience, resource: params.resource, subject: undefined, ok: false }
        exchanges.push(record)
        try {
          if (params.subject_token_type !== ID_TOKEN_TYPE) throw new errors.InvalidRequest(`subject_token_type must be ${ID_TOKEN_TYPE}`)
          if (params.requested_token_type !== ID_JAG_TYPE) throw new errors.InvalidRequest(`requested_token_type must be ${ID_JAG_TYPE}`)
          if (!params.subject_token) throw new errors.InvalidRequest('subject_token is required')
          if (!params.audience) throw new errors.InvalidRequest('audience is required')
          if (!params.resource) throw new errors.InvalidRequest('resource is required')
          let idToken: JWTPayload
          try {
            ;({ payload: idToken } = await jwtVerify(params.subject_token, await publicKey(), { issuer: provider.issuer, audience: ctx.oidc.client!.clientId }))
          } catch (error) {
            throw new errors.CustomOIDCProviderError('invalid_grant', `subject_token is not a valid ID token (${(error as Error).message})`)
          }
          record.subject = idToken.sub
          const clientId = options.clientIds[params.audience]
          if (!clientId) throw new errors.InvalidTarget('no client is registered at that audience')
          const refusal = policy?.({ subject: idToken.sub!, audience: params.audience, resource: params.resource })
          if (refusal) throw new errors.CustomOIDCProviderError(refusal.error, refusal.description)
          const key = await getSigningKey()
          const idJag = await new SignJWT({ client_id: clientId, resource: params.resource, ...(params.scope ? { scope: params.scope } : {}) })
            .setProtectedHeader({ alg: 'RS256', kid: String(key.kid), typ: 'oauth-id-jag+jwt' })
            .setIssuer(provider.issuer)
            .setSubject(idToken.sub!)
            .setAudience(params.audience)
            .setIssuedAt()
            .setExpirationTime('5m')
            .setJti(randomUUID())
            .sign(await importJWK(key, 'RS256'))
          record.ok = true
          ctx.body = { access_token: idJag, issued_token_type: ID_JAG_TYPE, token_type: 'N_A', expires_in: 300 }
        } catch (error) {
          record.error = (error as { error?: string }).error ?? 'server_error'
          throw error
        }
      }
      provider.registerGrantType(TOKEN_EXCHANGE, handler, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope'])
    },
  }
}

export interface AssertionRecord {
  kind: 'id-jag' | 'workload'
  subject: string | undefined
  /** The assertion's jti (an ID-JAG's is unique; a workload JWT's names the file version in tests). */
  jti: string | undefined
  clientId: string | undefined
  /** Whether the token request carried a DPoP proof. */
  dpop: boolean
  ok: boolean
  error?: string
}

export interface JwtBearerGrant {
  extend(provider: Provider): void
  /** Every JWT bearer token request, in order. */
  assertions: AssertionRecord[]
}

/**
 * RFC 7523 §2.1 JWT bearer grant: an ID-JAG from one of `idJagIssuers` (verified with its
 * jwks_uri; aud this server, client_id the authenticated client, used once) or a workload JWT
 * signed by one of `workloadKeys` (aud this server). The token is for the request's `resource`
 * and, with a DPoP proof, bound to its key.
 */
export function jwtBearerGrant(options: { idJagIssuers?: string[]; workloadKeys?: Array<{ issuer: string; key: KeyObject }> }): JwtBearerGrant {
  const assertions: AssertionRecord[] = []
  const usedJtis = new Set<string>()
  const jwks = new Map<string, ReturnType<typeof createRemoteJWKSet>>()
  const jwksFor = (issuer: string) => {
    let set = jwks.get(issuer)
    if (!set) jwks.set(issuer, (set = createRemoteJWKSet(new URL(`${issuer}/jwks`))))
    return set
  }
  return {
    assertions,
    extend(provider) {
      const handler = async (ctx: KoaContextWithOIDC) => {
        const params = ctx.oidc.params as Record<string, string | undefined>
        const client = ctx.oidc.client!
        const record: AssertionRecord = { kind: 'workload', subject: undefined, jti: undefined, clientId: client.clientId, dpop: Boolean(ctx.get('DPoP')), ok: false }
        assertions.push(record)
        try {
          if (!params.assertion) throw new errors.InvalidRequest('assertion is required')
          let claims: JWTPayload
          try {
            const header = decodeProtectedHeader(params.assertion)
            const unverified = decodeJwt(params.assertion)
            record.jti = unverified.jti
            if (header.typ === 'oauth-id-jag+jwt') {
              record.kind = 'id-jag'
              if (!options.idJagIssuers?.includes(String(unverified.iss))) throw new Error('the ID-JAG is from an issuer this server does not trust')
              ;({ payload: claims } = await jwtVerify(params.assertion, jwksFor(String(unverified.iss)), { audience: provider.issuer, typ: 'oauth-id-jag+jwt' }))
              if (claims.client_id !== client.clientId) throw new Error(`the ID-JAG was issued for client ${String(claims.client_id)}`)
              if (params.resource !== undefined && claims.resource !== params.resource) throw new Error('the ID-JAG is for another resource')
              if (!claims.jti || usedJtis.has(claims.jti)) throw new Error('the ID-JAG was used before')
              usedJtis.add(claims.jti)
            } else {
              const trusted = options.workloadKeys?.find((entry) => entry.issuer === unverified.iss)
              if (!trusted) throw new Error('the assertion is from an issuer this server does not trust')
              ;({ payload: claims } = await jwtVerify(params.assertion, trusted.key, { issuer: trusted.issuer, audience: provider.issuer }))
            }
          } catch (error) {
            // oidc-provider's InvalidGrant says only "grant request is invalid": the reason goes in the description here.
            throw new errors.CustomOIDCProviderError('invalid_grant', `the assertion was refused: ${(error as Error).message}`)
          }
          record.subject = claims.sub
          const dPoP = await validateDpop(provider, ctx)
          const [resourceServer] = await resolveRequestedResources(provider, ctx)
          const requested = (params.scope ?? '').split(' ').filter(Boolean)
          const scope = resourceServer ? requested.filter((name) => resourceServer.scopes.has(name)).join(' ') : ''
          // A grant of its own, as an authorization server records what it allowed.
          const grant = new provider.Grant({ accountId: claims.sub!, clientId: client.clientId })
          if (resourceServer && scope) grant.addResourceScope(resourceServer.audience, scope)
          const token = new provider.AccessToken({ accountId: claims.sub!, client, grantId: await grant.save(), gty: 'jwt_bearer' })
          if (resourceServer) {
            ;(token as unknown as { resourceServer: unknown }).resourceServer = resourceServer
            token.scope = scope || undefined
          }
          if (dPoP) {
            await checkDpopReplay(provider, ctx, dPoP, client.clientId)
            token.setThumbprint('jkt', dPoP.thumbprint)
          }
          const value = await token.save()
          record.ok = true
          ctx.body = buildTokenResponse(provider, { accessToken: value, expiresIn: token.expiration, scope: token.scope || undefined, tokenType: token.tokenType })
        } catch (error) {
          record.error = (error as { error?: string }).error ?? 'server_error'
          throw error
        }
      }
      provider.registerGrantType(JWT_BEARER, handler, ['assertion', 'scope', 'resource'], ['resource'])
    },
  }
}

let publicSigningKey: Promise<KeyObject> | undefined
function publicKey(): Promise<KeyObject> {
  publicSigningKey ??= getSigningKey().then((jwk) => createPublicKey({ key: jwk as never, format: 'jwk' }))
  return publicSigningKey
}
