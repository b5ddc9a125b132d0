/**
 * `npm run demo`: two local OAuth-protected MCP servers behind one authorization server
 * (oidc-provider) and the relay wired to them, on loopback: one speaking MCP 2025-11-25 (an SDK
 * 1.x server with sessions), one speaking 2026-07-28 (an SDK 2.x server, stateless, which asks
 * the user a question through the chat). Prints the login links and the curl commands to list
 * and call their tools. The relay listens on PORT (default 8787), the others on free ports.
 * Everything stops on Ctrl-C. test/scripts/demo.test.ts follows these instructions.
 */
import { pino } from 'pino'
import { buildApp } from '../src/app.ts'
import { loadConfig } from '../src/config/load-config.ts'
import { logDestination, loggerOptions } from '../src/http/logging.ts'
import { createRelay } from '../src/relay/create-relay.ts'
import { startAuthorizationServer } from '../test/peers/authorization-server.ts'
import { startMcpUpstream } from '../test/peers/mcp-upstream.ts'
import { startModernUpstream } from '../test/peers/modern-upstream.ts'

const port = Number(process.env.PORT ?? 8787)
const apiKey = 'demo-key-change-me-0123456789'
const userId = 'demo-user'

const authorizationServer = await startAuthorizationServer()
const [upstream, modernUpstream] = await Promise.all([
  startMcpUpstream({ auth: { issuer: authorizationServer.issuer } }),
  startModernUpstream({ auth: { issuer: authorizationServer.issuer }, tools: 'demo' }),
])

const config = loadConfig({
  PORT: String(port),
  HOST: '127.0.0.1',
  PUBLIC_BASE_URL: `http://localhost:${port}`,
  RELAY_API_KEYS: apiKey,
  MCP_SERVERS_JSON: JSON.stringify({
    servers: [
      { server_id: 'demo', description: 'Demo MCP server, MCP 2025-11-25 (whoami, echo)', mcp_url: upstream.url },
      { server_id: 'demo-2026', description: 'Demo MCP server, MCP 2026-07-28 (whoami, greet, echo)', mcp_url: modernUpstream.url },
    ],
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
}).then((response) => response.json() as Promise<{ servers: Array<{ server_id: string; login_url?: string }> }>)

const curl = (route: string, body: object) =>
  `curl -s ${base}${route} -H 'Authorization: Bearer ${apiKey}' -H 'Content-Type: application/json' -d '${JSON.stringify(body)}'`

const loginUrl = (serverId: string) => status.servers.find((server) => server.server_id === serverId)?.login_url
const greet = { user_id: userId, tool_ref: 'demo-2026::greet', input: {} }

process.stdout.write(`
MCP Auth Relay demo is running.
  relay                       ${base}   (API key: ${apiKey})
  authorization server        ${authorizationServer.issuer}
  MCP server demo             ${upstream.url}   (MCP 2025-11-25)
  MCP server demo-2026        ${modernUpstream.url}   (MCP 2026-07-28)

1. Open each login link in a browser, press Continue, and sign in with any name:
   ${loginUrl('demo')}
   ${loginUrl('demo-2026')}

2. Then list and call the tools as "${userId}":
   ${curl('/tools/list-tools', { user_id: userId })}
   ${curl('/tools/call-tool', { user_id: userId, tool_ref: 'demo::whoami', input: {} })}

3. A question through the chat: demo-2026's greet answers USER_INPUT_REQUIRED with an input_ref
   and the question (a model asks the user); the same call with input_ref and the answer finishes it:
   ${curl('/tools/call-tool', greet)}
   ${curl('/tools/call-tool', { ...greet, input_ref: '<input_ref>', input_response: { name: 'Ada' } })}

4. Sign out again (both servers):
   ${curl('/oauth/reset', { user_id: userId })}

Press Ctrl-C to stop.
`)

const stop = async () => {
  await app.close()
  await Promise.all([upstream.close(), modernUpstream.close(), authorizationServer.close()])
  process.exit(0)
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
