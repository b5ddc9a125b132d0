// Writes users' access tokens into a relay's store before it starts, through the relay's own
// token store (sealed, indexed, as a finished sign-in writes them), so that the bench can call a
// signed-in server as thousands of users without thousands of browser sign-ins. Run as a child
// process (bench/harness.ts seedTokens) with the relay's environment; it exits when done.
import { createPrivateKey } from 'node:crypto'
import { pino } from 'pino'
import { loadConfig } from '../src/config/load-config.ts'
import { createRelay } from '../src/relay/create-relay.ts'
import { mintAccessToken } from './access-tokens.ts'
import { childInput } from './harness.ts'

export interface SeedRequest {
  env: Record<string, string>
  privateKeyPem: string
  issuer: string
  /** Tokens for users `${prefix}${n}`, n in [from, to), on each server. */
  grants: Array<{ serverId: string; resource: string; prefix: string; from: number; to: number }>
}

const SCOPE = 'mcp:read mcp:write'
/** Long enough that no token comes near expiry (the relay refreshes ahead of it) during a bench. */
const LIFETIME_MS = 24 * 60 * 60 * 1000

const request = childInput<SeedRequest>()
const started = performance.now()
const config = loadConfig(request.env)
const { relay, deps } = await createRelay(config, { logger: pino({ level: 'silent' }) })
const tenant = config.apiKeys[0]!.tenant
const privateKey = createPrivateKey(request.privateKeyPem)
const now = Date.now()
let count = 0
for (const grant of request.grants) {
  for (let n = grant.from; n < grant.to; n++) {
    const userId = `${grant.prefix}${n}`
    const accessToken = await mintAccessToken(privateKey, { issuer: request.issuer, audience: grant.resource, subject: userId, scope: SCOPE, expiresAt: now + LIFETIME_MS })
    await deps.tokens.put(
      { tenant, userId, serverId: grant.serverId },
      { accessToken, refreshToken: undefined, expiresAt: now + LIFETIME_MS, scope: SCOPE, issuer: request.issuer, clientId: 'bench-relay', resource: grant.resource, obtainedAt: now },
    )
    count++
  }
}
await relay.close()
process.send!({ type: 'seeded', count, seconds: (performance.now() - started) / 1000 }, () => process.exit(0))
