// A real OAuth 2.1 authorization server for the tests: oidc-provider on loopback, port 0.
// DCR, PKCE (S256, required), RFC 8707 resource indicators issuing RFC 9068 JWT access tokens
// whose `aud` is the MCP server URL, refresh-token rotation with reuse detection, RFC 9207 `iss`.
// The sign-in page is our own (devInteractions off) so that a browser, real or scripted, can
// drive it: GET /interaction/:uid shows a form, POST /interaction/:uid/login signs in.
import { generateKeyPair, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { promisify } from 'node:util'
import Provider, { errors, type ClientMetadata, type Configuration, type KoaContextWithOIDC } from 'oidc-provider'
import { createMemoryAdapter } from './memory-adapter.ts'
import { readBody } from './read-body.ts'

export type { ClientMetadata }

export interface AuthorizationServerOptions {
  /** Access-token lifetime; default 60. Tests of expiry use 2–3. */
  accessTokenTtlSeconds?: number
  /** Default true. oidc-provider then revokes the whole grant when a used refresh token is replayed. */
  rotateRefreshTokens?: boolean
  /** Scopes the server knows besides `openid`; default mcp:read, mcp:write, offline_access. */
  scopes?: string[]
  /** Serve the issuer at a path, e.g. '/tenant1' (issuer http://127.0.0.1:PORT/tenant1). */
  issuerPath?: string
  /** Open dynamic client registration (no initial access token); default true. */
  registration?: boolean
  /** Pre-registered clients (client_secret_basic, client_secret_post, private_key_jwt with `jwks`, or none). */
  clients?: ClientMetadata[]
  /**
   * Also answer RFC 8414 metadata at /.well-known/oauth-authorization-server{issuerPath}
   * (oidc-provider itself serves only OpenID discovery); default false.
   */
  oauthMetadata?: boolean
  /** RFC 7009 token revocation (and `revocation_endpoint` in the metadata); default true. */
  revocation?: boolean
  /**
   * RFC 9449: DPoP-bound tokens for requests with a proof (`dpop_signing_alg_values_supported` in
   * the metadata); `requireNonce` makes every proof carry a nonce of this server's (§8). Default off.
   */
  dpop?: { requireNonce?: boolean }
  /** Called with the provider before it serves: more grant types (test/peers/extension-grants.ts). */
  extend?: (provider: Provider) => void
}

export interface TokenRequestRecord {
  grantType: string
  resource?: string
  clientId?: string
  accountId?: string
  ok: boolean
  /** OAuth error code (`invalid_grant`, …), or `http_<status>` while failTokenEndpoint is set. */
  error?: string
}

export interface AuthorizationServer {
  /** Issuer URL (origin plus issuerPath). */
  issuer: string
  /** Origin, http://127.0.0.1:PORT. */
  url: string
  close(): Promise<void>
  /** Successful refresh_token grants, in total or for one account. */
  refreshCount(accountId?: string): number
  /** Every token-endpoint request, in order. */
  tokenRequests: TokenRequestRecord[]
  /** While set, the token endpoint answers this HTTP status; undefined restores it. */
  failTokenEndpoint(status: number | undefined): void
  /**
   * While set, every token request is held for `ms`: by default before oidc-provider reads it,
   * with `afterProcessing` after oidc-provider answered it (a rotated refresh token is then
   * already used up). A request whose client goes away while held is dropped: held before, it
   * never reaches oidc-provider; held after, its answer is lost. undefined restores it (requests
   * already held stay held until their time is up or their client leaves).
   */
  delayTokenEndpoint(ms: number | undefined, options?: { afterProcessing?: boolean }): void
  /**
   * While set, the revocation endpoint answers this HTTP status, or with 'hang' holds every
   * request until its client goes away; undefined restores it.
   */
  failRevocationEndpoint(failure: number | 'hang' | undefined): void
  /** Requests that reached the revocation endpoint (failed ones included), in order. */
  revocationRequests: Array<{ answered: number | 'dropped' }>
  /** Token requests being held by delayTokenEndpoint right now. */
  heldTokenRequests(): number
  /**
   * Every secret this server handed out or was shown: codes and states of authorization
   * responses, token-request codes, verifiers and refresh tokens, issued tokens, client secrets.
   * Tests grep logs and answers for them.
   */
  issuedSecrets: IssuedSecret[]
}

export interface IssuedSecret {
  kind: 'code' | 'state' | 'code_verifier' | 'access_token' | 'refresh_token' | 'id_token' | 'client_secret' | 'registration_access_token'
  value: string
}

const DEFAULT_SCOPES = ['mcp:read', 'mcp:write', 'offline_access']
// Scopes that are about the grant, not about the MCP server: never put into an access token's `scope`.
const NON_RESOURCE_SCOPES = new Set(['openid', 'offline_access'])

// One RSA key per process: generating it costs ~50 ms and every server in a test file can share it.
let signingKey: Promise<Record<string, unknown>> | undefined
/** The private JWK (RS256, kid peer-rs256) every peer server signs with and publishes at its jwks_uri. */
export function getSigningKey(): Promise<Record<string, unknown>> {
  signingKey ??= promisify(generateKeyPair)('rsa', { modulusLength: 2048 }).then(({ privateKey }) => ({
    ...privateKey.export({ format: 'jwk' }),
    kid: 'peer-rs256',
    alg: 'RS256',
    use: 'sig',
  }))
  return signingKey
}

export async function startAuthorizationServer(opts: AuthorizationServerOptions = {}): Promise<AuthorizationServer> {
  const accessTokenTtl = opts.accessTokenTtlSeconds ?? 60
  const scopes = ['openid', ...(opts.scopes ?? DEFAULT_SCOPES).filter((scope) => scope !== 'openid')]
  const resourceScopes = scopes.filter((scope) => !NON_RESOURCE_SCOPES.has(scope)).join(' ')
  const prefix = normalizeIssuerPath(opts.issuerPath)
  const tokenRequests: TokenRequestRecord[] = []
  const issuedSecrets: IssuedSecret[] = []
  const keepSecret = (kind: IssuedSecret['kind'], value: unknown) => {
    if (typeof value === 'string' && value !== '') issuedSecrets.push({ kind, value })
  }
  let failStatus: number | undefined
  let revocationFailure: number | 'hang' | undefined
  const revocationRequests: AuthorizationServer['revocationRequests'] = []
  let delay: { ms: number; afterProcessing: boolean } | undefined
  let held = 0

  // The issuer needs the port, so listen first and build the provider afterwards.
  let handle: (req: IncomingMessage, res: ServerResponse) => Promise<void> = async (_req, res) => {
    res.writeHead(503).end('starting')
  }
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy(err instanceof Error ? err : undefined)
      } else {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`peer authorization server: ${String(err)}`)
      }
    })
  })
  await listen(server, 0)
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const issuer = `${origin}${prefix}`

  const configuration: Configuration = {
    adapter: createMemoryAdapter(),
    jwks: { keys: [(await getSigningKey()) as never] },
    clients: opts.clients ?? [],
    scopes,
    claims: { openid: ['sub'] },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    pkce: { required: () => true },
    // OAuth 2.1: the code flow only (oidc-provider's default also offers implicit and hybrid).
    responseTypes: ['code'],
    rotateRefreshToken: opts.rotateRefreshTokens ?? true,
    // Every code grant of a client allowed to refresh gets a refresh token, offline_access or not:
    // the relay keeps users signed in without asking for a scope MCP servers do not advertise.
    issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Refresh tokens outlive the browser's sign-in session, as they do at real MCP authorization servers.
    expiresWithSession: () => false,
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: accessTokenTtl,
      Interaction: 600,
      Session: 3600,
      Grant: 86_400,
      RefreshToken: 86_400,
    },
    interactions: { url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: opts.registration ?? true },
      // RFC 6749 §4.4, for service-account clients (grant_types ['client_credentials']).
      clientCredentials: { enabled: true },
      // RFC 7009 §2.1: a client revokes only tokens issued to it.
      revocation: { enabled: opts.revocation ?? true, allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId },
      introspection: { enabled: true },
      dPoP: opts.dpop
        ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => opts.dpop?.requireNonce ?? false }
        : { enabled: false },
      resourceIndicators: {
        enabled: true,
        // No resource requested: no default (the token is then for the userinfo endpoint only).
        defaultResource: () => undefined,
        // A refresh without `resource` still gets a token for the resource that was granted.
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resourceIndicator) => {
          const protocol = URL.parse(resourceIndicator)?.protocol
          if (protocol !== 'http:' && protocol !== 'https:') {
            throw new errors.InvalidTarget('resource must be an http(s) URL')
          }
          return {
            scope: resourceScopes,
            audience: resourceIndicator,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }
        },
      },
    },
  }

  const provider = new Provider(issuer, configuration)
  opts.extend?.(provider)
  const record = (ctx: KoaContextWithOIDC, ok: boolean, error?: string) => {
    const oidc = ctx.oidc
    const params = (oidc.params ?? {}) as Record<string, unknown>
    const entities = oidc.entities as Record<string, { accountId?: string } | undefined>
    tokenRequests.push({
      grantType: String(params.grant_type ?? ''),
      resource: typeof params.resource === 'string' ? params.resource : undefined,
      clientId: oidc.client?.clientId,
      accountId: entities.AccessToken?.accountId ?? entities.RefreshToken?.accountId
        ?? entities.AuthorizationCode?.accountId ?? oidc.account?.accountId,
      ok,
      error,
    })
  }
  const keepTokenRequestSecrets = (ctx: KoaContextWithOIDC) => {
    const params = (ctx.oidc?.params ?? {}) as Record<string, unknown>
    for (const kind of ['code', 'code_verifier', 'refresh_token'] as const) keepSecret(kind, params[kind])
    keepSecret('client_secret', ctx.oidc?.client?.clientSecret)
  }
  provider.on('authorization.success', (_ctx: KoaContextWithOIDC, out?: Record<string, unknown>) => {
    keepSecret('code', out?.code)
    keepSecret('state', out?.state)
  })
  provider.on('registration_create.success', (ctx: KoaContextWithOIDC, client: { clientSecret?: string }) => {
    keepSecret('client_secret', client.clientSecret)
    keepSecret('registration_access_token', (ctx.body as Record<string, unknown> | undefined)?.registration_access_token)
  })
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    keepTokenRequestSecrets(ctx)
    const body = (ctx.body ?? {}) as Record<string, unknown>
    for (const kind of ['access_token', 'refresh_token', 'id_token'] as const) keepSecret(kind, body[kind])
    record(ctx, true)
  })
  provider.on('grant.error', (ctx: KoaContextWithOIDC, err: errors.OIDCProviderError) => {
    keepTokenRequestSecrets(ctx)
    record(ctx, false, err.error)
  })
  provider.on('server_error', (ctx: KoaContextWithOIDC) => {
    if (ctx.oidc?.route === 'token') record(ctx, false, 'server_error')
  })

  const callback = provider.callback()
  const tokenPath = `${prefix}/token`
  const revocationPath = `${prefix}/token/revocation`
  const interactionPrefix = `${prefix}/interaction/`

  handle = async (req, res) => {
    const path = new URL(req.url ?? '/', origin).pathname

    if (failStatus !== undefined && req.method === 'POST' && path === tokenPath) {
      await answerFailedTokenRequest(req, res, failStatus, tokenRequests)
      return
    }
    if (req.method === 'POST' && path === revocationPath && opts.revocation !== false) {
      if (revocationFailure === 'hang') {
        await holdWhileConnected(res, 600_000)
        revocationRequests.push({ answered: 'dropped' })
        return
      }
      if (revocationFailure !== undefined) {
        revocationRequests.push({ answered: revocationFailure })
        res.writeHead(revocationFailure, { 'content-type': 'text/plain' }).end('the test made the revocation endpoint fail')
        return
      }
      res.once('finish', () => revocationRequests.push({ answered: res.statusCode }))
    }
    if (delay !== undefined && req.method === 'POST' && path === tokenPath) {
      const { ms, afterProcessing } = delay
      if (afterProcessing) {
        holdAnswer(res, ms, (holding) => (held += holding ? 1 : -1))
      } else {
        held++
        const stayed = await holdWhileConnected(res, ms)
        held--
        if (!stayed) {
          tokenRequests.push({ grantType: '', ok: false, error: 'client_gone' })
          return
        }
      }
    }
    if (path.startsWith(interactionPrefix)) {
      await handleInteraction(provider, req, res, path.slice(interactionPrefix.length))
      return
    }
    if (opts.oauthMetadata && path === `/.well-known/oauth-authorization-server${prefix}`) {
      // RFC 8414 §3.1: path insertion; the document is the same as OpenID discovery's.
      req.url = `${prefix}/.well-known/openid-configuration`
    }
    if (prefix) {
      const url = req.url ?? '/'
      if (url !== prefix && !url.startsWith(`${prefix}/`) && !url.startsWith(`${prefix}?`)) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
        return
      }
      // oidc-provider derives its mount path from originalUrl minus url (what Express does on mount).
      const mounted = req as IncomingMessage & { originalUrl?: string }
      mounted.originalUrl = url
      req.url = url.slice(prefix.length) || '/'
    }
    await callback(req, res)
  }

  return {
    issuer,
    url: origin,
    tokenRequests,
    issuedSecrets,
    refreshCount: (accountId) => tokenRequests.filter((r) =>
      r.ok && r.grantType === 'refresh_token' && (accountId === undefined || r.accountId === accountId)).length,
    failTokenEndpoint: (status) => {
      failStatus = status
    },
    delayTokenEndpoint: (ms, options = {}) => {
      delay = ms === undefined ? undefined : { ms, afterProcessing: options.afterProcessing ?? false }
    },
    heldTokenRequests: () => held,
    failRevocationEndpoint: (failure) => {
      revocationFailure = failure
    },
    revocationRequests,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()))
      server.closeAllConnections()
    }),
  }
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
}

function normalizeIssuerPath(issuerPath: string | undefined): string {
  if (!issuerPath || issuerPath === '/') return ''
  const withSlash = issuerPath.startsWith('/') ? issuerPath : `/${issuerPath}`
  return withSlash.endsWith('/') ? withSlash.slice(0, -1) : withSlash
}

async function answerFailedTokenRequest(
  req: IncomingMessage, res: ServerResponse, status: number, tokenRequests: TokenRequestRecord[],
): Promise<void> {
  const params = new URLSearchParams(await readBody(req))
  tokenRequests.push({
    grantType: params.get('grant_type') ?? '',
    resource: params.get('resource') ?? undefined,
    clientId: params.get('client_id') ?? basicAuthClientId(req.headers.authorization),
    ok: false,
    error: `http_${status}`,
  })
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'the test made the token endpoint fail' }))
}

/** Waits `ms`; false as soon as the client closes the connection (the request is then dropped). */
function holdWhileConnected(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const onClose = () => {
      clearTimeout(timer)
      resolve(false)
    }
    const timer = setTimeout(() => {
      res.off('close', onClose)
      resolve(!res.destroyed)
    }, ms)
    res.once('close', onClose)
  })
}

/**
 * Lets oidc-provider handle the request now but holds its answer for `ms`: the grant is done
 * (a rotated refresh token is used up) while the client has not heard of it yet. A client that
 * leaves meanwhile never gets the answer.
 */
function holdAnswer(res: ServerResponse, ms: number, onHold: (holding: boolean) => void): void {
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse
  res.end = ((...args: unknown[]) => {
    onHold(true)
    const timer = setTimeout(() => {
      onHold(false)
      res.off('close', onClose)
      if (!res.destroyed) end(...args)
    }, ms)
    const onClose = () => {
      clearTimeout(timer)
      onHold(false)
    }
    res.once('close', onClose)
    return res
  }) as ServerResponse['end']
}

function basicAuthClientId(authorization: string | undefined): string | undefined {
  const match = /^Basic\s+(\S+)$/i.exec(authorization ?? '')
  if (!match?.[1]) return undefined
  const decoded = Buffer.from(match[1], 'base64').toString('utf8')
  return decodeURIComponent(decoded.slice(0, decoded.indexOf(':')))
}

// `rest` is what follows /interaction/: "<uid>" or "<uid>/login".
async function handleInteraction(provider: Provider, req: IncomingMessage, res: ServerResponse, rest: string) {
  const [uid, action] = rest.split('/')
  try {
    const details = await provider.interactionDetails(req, res)
    if (details.uid !== uid) throw new Error('interaction cookie does not match the URL')

    if (req.method === 'GET' && action === undefined) {
      if (details.prompt.name === 'login') {
        const formAction = `${new URL(req.url ?? '/', 'http://peer').pathname}/login`
        sendHtml(res, 200, loginPage(formAction, String(details.params.client_id), String(details.params.scope ?? '')))
        return
      }
      if (details.prompt.name === 'consent') {
        await grantEverythingRequested(provider, req, res, details)
        return
      }
      throw new Error(`prompt ${details.prompt.name} is not supported by the peer`)
    }
    if (req.method === 'POST' && action === 'login') {
      const login = new URLSearchParams(await readBody(req)).get('login')?.trim()
      if (!login) {
        sendHtml(res, 400, '<!doctype html><p>login is required</p>')
        return
      }
      // The account id is the login name; it becomes the token's `sub`.
      await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false })
      return
    }
    sendHtml(res, 405, '<!doctype html><p>method not allowed</p>')
  } catch (err) {
    if (res.headersSent) throw err
    sendHtml(res, 400, `<!doctype html><p>interaction failed: ${escapeHtml(String(err))}</p>`)
  }
}

type InteractionDetails = Awaited<ReturnType<Provider['interactionDetails']>>

// No consent screen: the peer grants every scope and resource that was asked for.
async function grantEverythingRequested(
  provider: Provider, req: IncomingMessage, res: ServerResponse, details: InteractionDetails,
) {
  const accountId = details.session?.accountId
  if (!accountId) throw new Error('consent without a signed-in account')
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: String(details.params.client_id) })
  if (!grant) throw new Error('grant not found')

  const missing = details.prompt.details as {
    missingOIDCScope?: string[]
    missingOIDCClaims?: string[]
    missingResourceScopes?: Record<string, string[]>
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
  for (const [resource, resourceScopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, resourceScopes.join(' '))
  }
  const grantId = await grant.save()
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
}

function loginPage(action: string, clientId: string, scope: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
  <h1>Sign in</h1>
  <p>Client <code>${escapeHtml(clientId)}</code> asks for <code>${escapeHtml(scope)}</code>.</p>
  <form method="post" action="${escapeHtml(action)}" id="login-form">
    <label>Account <input name="login" id="login" autocomplete="username" autofocus required></label>
    <button type="submit" id="submit">Sign in</button>
  </form>
</body></html>`
}

function sendHtml(res: ServerResponse, status: number, html: string) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html)
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
