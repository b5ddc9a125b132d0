// A malicious OAuth authorization server for the battery, by hand over node:http: one server
// hosting many issuers at /<name>, each answering RFC 8414 metadata, an authorization endpoint that
// sends the browser straight back with a code (no sign-in page: the attack is on what follows),
// a token endpoint, dynamic client registration (RFC 7591), revocation and a JWKS, every one of
// which a persona may replace with a lie: a mix-up issuer, endpoints on private addresses or other
// origins, huge or endless answers, a false token_type, an ID token from another issuer, tokens
// for another audience, a redirected token request, JWKS garbage, registrations that lie. Every
// request is recorded (with its form body), so a test can prove what never reached it.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { readBody } from '../peers/read-body.ts'

export interface AsRequest {
  persona: string
  method: string
  /** The endpoint: metadata, authorize, token, register, revoke, jwks, or the path. */
  endpoint: string
  /** The form or JSON body, as text. */
  body: string
  /** The form body, parsed (token and revocation requests). */
  form: URLSearchParams
}

export interface AsPersona {
  /** Replaces or adds fields of the metadata (`issuer: undefined` leaves the honest one). */
  metadata?: (issuer: string) => Record<string, unknown>
  /** Takes over any endpoint's answer; returning false leaves it to the default. */
  answer?: (endpoint: string, req: IncomingMessage, res: ServerResponse, request: AsRequest) => boolean | void
  /** The token endpoint's JSON answer (default: an opaque bearer token, 1 hour). */
  token?: (request: AsRequest) => Record<string, unknown>
  /** The registration endpoint's JSON answer (default: a public client). */
  registration?: (request: AsRequest) => Record<string, unknown>
}

export interface HostileAuthorizationServer {
  origin: string
  /** The issuer of persona `name`: ORIGIN/<name>. */
  issuerOf(name: string): string
  define(name: string, persona: AsPersona): string
  requests: AsRequest[]
  /** Responses still open (endless or trickling answers). */
  openResponses(): number
  close(): Promise<void>
}

/** An access token this server issues to persona `name` for code number `n`: recognisable in other servers' records. */
export function hostileAccessToken(name: string, n: number): string {
  return `hostile-at-${name}-${n}`
}

export async function startHostileAuthorizationServer(): Promise<HostileAuthorizationServer> {
  const personas = new Map<string, AsPersona>()
  const requests: AsRequest[] = []
  const open = new Set<ServerResponse>()
  const sockets = new Set<Socket>()
  let issued = 0

  const server = createServer((req, res) => {
    open.add(res)
    res.on('close', () => open.delete(res))
    res.on('error', () => undefined)
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(`hostile AS: ${String(error)}`)
      else res.destroy()
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const issuerOf = (name: string) => `${origin}/${name}`

  function metadataOf(name: string, persona: AsPersona): Record<string, unknown> {
    const issuer = issuerOf(name)
    return {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      registration_endpoint: `${issuer}/register`,
      revocation_endpoint: `${issuer}/revoke`,
      jwks_uri: `${issuer}/jwks`,
      response_types_supported: ['code'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none', 'client_secret_basic'],
      scopes_supported: ['mcp:read'],
      ...persona.metadata?.(issuer),
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', origin)
    const wellKnown = /^\/\.well-known\/(?:oauth-authorization-server|openid-configuration)\/([^/]+)$/.exec(url.pathname)
    const endpointMatch = /^\/([^/]+)(?:\/(authorize|token|register|revoke|jwks))?$/.exec(url.pathname)
    const name = wellKnown?.[1] ?? endpointMatch?.[1]
    const endpoint = wellKnown ? 'metadata' : (endpointMatch?.[2] ?? url.pathname)
    const persona = name === undefined ? undefined : personas.get(name)
    const body = req.method === 'POST' ? await readBody(req) : ''
    const request: AsRequest = { persona: name ?? '', method: req.method ?? '', endpoint, body, form: new URLSearchParams(body) }
    requests.push(request)
    if (!persona || name === undefined) return void json(res, 404, { error: 'not_found' })
    if (persona.answer?.(endpoint, req, res, request)) return
    switch (endpoint) {
      case 'metadata':
        return void json(res, 200, metadataOf(name, persona))
      case 'authorize': {
        // Straight back to the client with a code, as an authorization server with the user
        // already signed in would; `iss` as RFC 9207 has it.
        const back = new URL(url.searchParams.get('redirect_uri') ?? 'about:blank')
        back.searchParams.set('code', `code-${name}-${++issued}`)
        back.searchParams.set('state', url.searchParams.get('state') ?? '')
        back.searchParams.set('iss', issuerOf(name))
        return void res.writeHead(302, { location: back.href }).end()
      }
      case 'token':
        return void json(res, 200, persona.token?.(request) ?? { access_token: hostileAccessToken(name, ++issued), token_type: 'Bearer', expires_in: 3600, refresh_token: `hostile-rt-${name}-${issued}` })
      case 'register':
        return void json(res, 201, persona.registration?.(request) ?? { client_id: `client-of-${name}`, token_endpoint_auth_method: 'none', redirect_uris: JSON.parse(body || '{}').redirect_uris ?? [] })
      case 'revoke':
        return void res.writeHead(200).end()
      case 'jwks':
        return void json(res, 200, { keys: [] })
      default:
        return void json(res, 404, { error: 'not_found' })
    }
  }

  return {
    origin,
    issuerOf,
    define(name, persona) {
      personas.set(name, persona)
      return issuerOf(name)
    },
    requests,
    openResponses: () => open.size,
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
}
