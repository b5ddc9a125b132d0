import { withRefreshLock } from '../oauth/refresh.ts'
import { storeKey } from '../store/keys.ts'
import type { UpstreamToken } from '../store/tokens.ts'
import { ownerOf, poolKey, type RelayDeps } from './deps.ts'
import { resetIdentity } from './enterprise-identity.ts'
import { dropUserToolList } from './tool-lists.ts'
import { revokeGrant } from './revoke-grant.ts'
import { findServer } from './select-servers.ts'
import type { Caller, ResetResult } from './types.ts'

/**
 * POST /oauth/reset (and POST /admin/reset for any tenant): deletes this tenant's user's tokens
 * for one server or for all configured servers (all: the user's identity at the enterprise
 * identity provider too), and what depended on them (pooled session,
 * per-user tool list, step-up count, a sign-in waiting for its code), then revokes each deleted grant at its authorization
 * server (RFC 7009). Nothing of any other user is touched: every key below is built from
 * (tenant, user_id). A revocation that fails leaves nothing behind: the token is deleted first.
 */
export async function reset(deps: RelayDeps, caller: Caller, request: { serverId: string | undefined }): Promise<ResetResult> {
  const servers = request.serverId === undefined ? [...deps.config.servers.values()] : [findServer(deps, request.serverId, 'server_id')]
  const deleted: Array<{ server: (typeof servers)[number]; token: UpstreamToken | undefined }> = []
  for (const server of servers) {
    // A service account's (or workload's) token is the server's, not this user's: a user's reset leaves it alone.
    if (server.grantType === 'client_credentials' || server.grantType === 'workload_identity') continue
    const owner = ownerOf(caller, server)
    // SIGN_IN_CONFIRMATION=code: a sign-in still waiting for its code goes too.
    await deps.pendingSignIns.remove(owner)
    // Under the refresh lock: a refresh in flight would otherwise store its token after this removal.
    const removed = await withRefreshLock(deps.oauth, owner, async () => {
      const token = await deps.tokens.get(owner)
      return (await deps.tokens.remove(owner)) ? { token } : undefined
    })
    if (removed) deleted.push({ server, token: removed.token })
    deps.logger.info({ event: 'reset', tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId, deleted: removed !== undefined }, 'tokens reset')
    await deps.pool.drop(poolKey(owner))
    await dropUserToolList(deps, server, owner)
    await deps.stepUps.delete(storeKey(owner.tenant, owner.userId, owner.serverId))
  }
  const deletedIds = deleted.map(({ server }) => server.serverId)
  // In parallel, each bounded by its server's timeout: a reset of every server waits for the slowest one only.
  // A reset of every server also signs the user out at the enterprise identity provider: one
  // server's reset leaves the identity that every enterprise server shares.
  const [identityRevoked, ...revoked] = await Promise.all([
    request.serverId === undefined ? resetIdentity(deps, caller) : undefined,
    ...deleted.map(({ server, token }) => revokeGrant(deps, server, ownerOf(caller, server), token)),
  ])
  return {
    user_id: caller.userId,
    deleted_server_ids: deletedIds,
    servers: deleted.map(({ server }, index) => ({ server_id: server.serverId, revoked: revoked[index]! })),
    ...(identityRevoked === undefined ? {} : { identity_provider: { revoked: identityRevoked } }),
    message:
      deleted.length === 0 && identityRevoked === undefined
        ? 'No stored sign-in was found for this user.'
        : `Signed out of ${[...deletedIds, ...(identityRevoked === undefined ? [] : ['the organization account'])].join(', ')}. The next call will ask the user to sign in again.`,
  }
}
