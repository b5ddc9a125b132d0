// What the lifecycle tests share: an oidc-provider with rotation and short-lived tokens, an MCP
// server that checks them, relay processes wired to both, and the calls a test makes through them.
import { expect } from 'vitest'
import { storeKey } from '../../src/store/keys.ts'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { createCookieJar, followToCallback, openInBrowser, signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { serversJson, startRelayProcess, type RelayProcess } from '../support/relay-process.ts'

/** Access tokens live this long: expiry is reached within a test, refresh is exercised every time. */
export const ACCESS_TOKEN_TTL_SECONDS = 3

/** base64 of 32 bytes each; the tests never use them for anything else. */
export const KEY_1 = Buffer.alloc(32, 1).toString('base64')
export const KEY_2 = Buffer.alloc(32, 2).toString('base64')

export interface Peers {
  as: AuthorizationServer
  docs: McpUpstream
  close(): Promise<void>
}

export async function startPeers(): Promise<Peers> {
  const as = await startAuthorizationServer({ accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS, rotateRefreshTokens: true })
  const docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
  return { as, docs, close: async () => void (await Promise.all([docs.close(), as.close()])) }
}

/** The environment every replica of one deployment shares (README "Running several replicas"). */
export function deploymentEnv(peers: Peers, storeUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MCP_SERVERS_JSON: serversJson([{ server_id: 'docs', description: 'Internal docs', mcp_url: peers.docs.url }]),
    STORE_URL: storeUrl,
    RELAY_ENCRYPTION_KEY: KEY_1,
    OAUTH_TRUSTED_HOSTS: new URL(peers.as.url).host,
    ...extra,
  }
}

export function startReplica(env: Record<string, string>, options: { port?: number } = {}): Promise<RelayProcess> {
  return startRelayProcess(env, options)
}

/** The relay's token key for a user of the default tenant on server `docs`. */
export function docsTokenKey(userId: string): string {
  return storeKey('default', userId, 'docs')
}

export async function loginUrlFor(relay: RelayProcess, userId: string): Promise<string> {
  const status = await relay.post('/tools/auth-status', { user_id: userId, server_id: 'docs' })
  expect(status.status).toBe(200)
  expect(status.body.servers[0]).toMatchObject({ status: 'need_auth' })
  return status.body.servers[0].login_url as string
}

/**
 * Signs `userId` in as `account` through `relay`'s login link, as a browser does. With `reach`,
 * the browser's requests to the relay (login link and callback, which name PUBLIC_BASE_URL) land
 * on that replica instead, as a load balancer would send them.
 */
export async function signIn(relay: RelayProcess, userId: string, account = userId, options: { reach?: RelayProcess } = {}): Promise<void> {
  const loginUrl = await loginUrlFor(relay, userId)
  if (!options.reach) {
    const page = await signInThroughBrowser(loginUrl, account)
    expect(page.status, page.html).toBe(200)
    return
  }
  const publicBaseUrl = relay.env.PUBLIC_BASE_URL!
  const reach = (url: string) => (url.startsWith(publicBaseUrl) ? options.reach!.url + url.slice(publicBaseUrl.length) : url)
  const jar = createCookieJar()
  const callbackUrl = await followToCallback(reach(loginUrl), account, { jar })
  const page = await openInBrowser(reach(callbackUrl), jar, 10_000)
  expect(page.status, await page.text()).toBe(200)
}

/** call-tool docs::whoami; the relay's whole answer. */
export async function whoami(relay: RelayProcess, userId: string): Promise<any> {
  const answer = await relay.post('/tools/call-tool', { user_id: userId, tool_ref: 'docs::whoami', input: {} })
  expect(answer.status, JSON.stringify(answer.body)).toBe(200)
  return answer.body
}

export async function expectSignedInAs(relay: RelayProcess, userId: string, account = userId): Promise<void> {
  const answer = await whoami(relay, userId)
  expect(answer, JSON.stringify(answer)).toMatchObject({ ok: true, result: { structuredContent: { sub: account } } })
}

/** Sleeps past the access token's lifetime (plus a margin for the JWT's whole-second `exp`). */
export function waitForExpiry(): Promise<void> {
  return sleep(ACCESS_TOKEN_TTL_SECONDS * 1000 + 600)
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `condition` every 25 ms until it holds, for at most `timeoutMs`; throws naming `what` otherwise. */
export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > giveUpAt) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`)
    await sleep(25)
  }
}
