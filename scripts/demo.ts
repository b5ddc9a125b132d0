/**
 * `npm run demo`: a local OAuth-protected MCP server (an SDK server behind oidc-provider) and the
 * relay wired to it, on loopback. Prints the login link and the curl commands to list and call
 * a tool. Everything stops on Ctrl-C.
 */
import { pino } from 'pino'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/load-config.ts'
import { logDestination, loggerOptions } from '../src/http/logging.ts'
import { createRelay } from '../src/relay/create-relay.ts'
import { startAuthorizationServer } from '../test/peers/authorization-server.ts'
import { startMcpUpstream } from '../test/peers/mcp-upstream.ts'

const port = Number(process.env.PORT ?? 8787)
const apiKey = 'demo-key-change-me-0123456789'
const userId = 'demo-user'

const authorizationServer = await startAuthorizationServer({ port: port + 1 })
const upstream = await startMcpUpstream({ auth: { issuer: authorizationServer.issuer }, port: port + 2 })

const config = loadConfig({
  PORT: String(port),
  HOST: '127.0.0.1',
  PUBLIC_BASE_URL: `http://localhost:${port}`,
  RELAY_API_KEYS: apiKey,
  MCP_SERVERS_JSON: JSON.stringify({
    servers: [{ server_id: 'demo', description: 'Demo MCP server (whoami, echo)', mcp_url: upstream.url }],
  }),
  STORE_URL: 'memory://',
  OAUTH_TRUSTED_HOSTS: new URL(authorizationServer.url).host,
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
})
const logger = pino(loggerOptions({}, config.logLevel) as pino.LoggerOptions, await logDestination(process.stdout.isTTY))
const { relay, signInKeys } = await createRelay(config, { logger: logger.child({ component: 'relay' }) })
const app = await buildApp({ config, relay, signInKeys, loggerInstance: logger })
await app.listen({ port, host: '127.0.0.1' })

const base = `http://localhost:${port}`
const status = await fetch(`${base}/tools/auth-status`, {
  method: 'POST',
  headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
  body: JSON.stringify({ user_id: userId }),
}).then((response) => response.json() as Promise<{ servers: Array<{ login_url?: string }> }>)

const curl = (route: string, body: object) =>
  `curl -s ${base}${route} -H 'Authorization: Bearer ${apiKey}' -H 'Content-Type: application/json' -d '${JSON.stringify(body)}'`

process.stdout.write(`
MCP Auth Relay demo is running.
  relay                 ${base}   (API key: ${apiKey})
  authorization server  ${authorizationServer.issuer}
  MCP server            ${upstream.url}

1. Open this login link in a browser, press Continue, and sign in with any name:
   ${status.servers[0]?.login_url}

2. Then list and call the tools as "${userId}":
   ${curl('/tools/list-tools', { user_id: userId })}
   ${curl('/tools/call-tool', { user_id: userId, tool_ref: 'demo::whoami', input: {} })}

3. Sign out again:
   ${curl('/oauth/reset', { user_id: userId })}

Press Ctrl-C to stop.
`)

const stop = async () => {
  await app.close()
  await Promise.all([upstream.close(), authorizationServer.close()])
  process.exit(0)
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
