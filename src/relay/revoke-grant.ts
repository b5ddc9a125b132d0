import type { ServerConfig } from '../config/load-config.ts'
import { withRefreshLock } from '../oauth/refresh.ts'
import { revocationEndpointOf } from '../oauth/client-config.ts'
import { revokeTokens, type RevocationOutcome, type Revoked } from '../oauth/revocation.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { timeoutFor, type RelayDeps } from './deps.ts'
import { resolveServerAuth } from './sign-in-link.ts'

/**
 * DESIGN.md §6: a grant the relay lets go of (reset, or replaced by another sign-in) is revoked at
 * its authorization server (RFC 7009), with the client registration that obtained it, bounded by
 * the server's upstream timeout. The token is already out of the store: a revocation that fails
 * is reported (the answer and one `revocation` audit line), never retried and never blocking.
 * Never throws.
 */
export async function revokeGrant(
  deps: RelayDeps,
  server: ServerConfig,
  owner: TokenOwner,
  token: UpstreamToken | undefined,
): Promise<Revoked> {
  let outcome: RevocationOutcome
  try {
    // A stored value no key opens any more (DESIGN.md §5) was deleted but holds nothing to revoke with.
    if (!token) outcome = { revoked: false, reason: 'the stored token could not be opened' }
    else outcome = await revokeWithItsClient(deps, server, token)
  } catch (error) {
    outcome = { revoked: false, reason: error instanceof Error ? error.message : 'revocation failed' }
  }
  logRevocation(deps, owner, outcome)
  return outcome.revoked
}

async function revokeWithItsClient(deps: RelayDeps, server: ServerConfig, token: UpstreamToken): Promise<RevocationOutcome> {
  const { auth, client } = await resolveServerAuth(deps, server)
  if (!revocationEndpointOf(auth)) return { revoked: 'unsupported' }
  // Only the client that obtained a grant may revoke it (RFC 7009 §2.1), and only at its issuer.
  if (auth.metadata.issuer !== token.issuer) return { revoked: false, reason: 'the server now names another authorization server' }
  if (client.clientId !== token.clientId) return { revoked: false, reason: 'the client that obtained the grant is no longer registered' }
  return revokeTokens(deps.oauth, auth, client, token, timeoutFor(deps, server))
}

/**
 * Stores the token of a completed sign-in under the refresh lock (a refresh in flight would
 * otherwise store the old grant's token over it) and returns the token it replaced when that
 * was another grant, to be revoked with revokeReplacedGrant once the new one is stored.
 */
export function storeReplacingGrant(deps: RelayDeps, owner: TokenOwner, token: UpstreamToken): Promise<UpstreamToken | undefined> {
  return withRefreshLock(deps.oauth, owner, async () => {
    const previous = await deps.tokens.get(owner)
    await deps.tokens.put(owner, token)
    return previous && previous.refreshToken !== token.refreshToken ? previous : undefined
  })
}

/**
 * DESIGN.md §4 `force_reauth`: the grant a new sign-in replaced is revoked in the background (the
 * browser's callback page does not wait for another server's answer). Not when both tokens
 * name the same account: an authorization server may issue the new tokens under the very same
 * grant (oidc-provider does for a second sign-in in one browser session, a step-up for instance),
 * and revoking the old refresh token would then revoke the new tokens with it (RFC 7009 §2.1).
 */
export function revokeReplacedGrant(deps: RelayDeps, server: ServerConfig, owner: TokenOwner, previous: UpstreamToken, next: UpstreamToken): void {
  if (isSameAccount(previous, next)) {
    logRevocation(deps, owner, { revoked: false, reason: 'same account: the new sign-in may share the grant' })
    return
  }
  void revokeGrant(deps, server, owner, previous)
}

function logRevocation(deps: RelayDeps, owner: TokenOwner, outcome: RevocationOutcome): void {
  deps.logger.info(
    { event: 'revocation', tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId, revoked: outcome.revoked, reason: outcome.reason },
    'grant revocation',
  )
}

/**
 * Whether two tokens of one issuer and client were issued to the same account: both access tokens
 * are JWTs (RFC 9068) naming the same `sub`. Read, not verified: it only decides whether to
 * leave a grant alone. Opaque tokens say nothing, and count as different accounts.
 */
function isSameAccount(previous: UpstreamToken, next: UpstreamToken): boolean {
  if (previous.issuer !== next.issuer || previous.clientId !== next.clientId) return false
  const before = subjectOf(previous.accessToken)
  return before !== undefined && before === subjectOf(next.accessToken)
}

function subjectOf(accessToken: string): string | undefined {
  const payload = accessToken.split('.')[1]
  if (payload === undefined) return undefined
  try {
    const sub: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')).sub
    return typeof sub === 'string' ? sub : undefined
  } catch {
    return undefined // not a JWT: an opaque token
  }
}
