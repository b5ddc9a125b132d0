import { withRefreshLock } from '../oauth/refresh.ts'
import { storeKey } from '../store/keys.ts'
import { ownerOf, poolKey, toolCacheKey, type RelayDeps } from './deps.ts'
import { findServer } from './select-servers.ts'
import type { Caller, ResetResult } from './types.ts'

/**
 * POST /oauth/reset: deletes this tenant's user's tokens for one server or for all configured
 * servers, and what depended on them (pooled session, per-user tool list, step-up count).
 * Nothing of any other user is touched: every key below is built from (tenant, user_id).
 */
export async function reset(deps: RelayDeps, caller: Caller, request: { serverId: string | undefined }): Promise<ResetResult> {
  const servers = request.serverId === undefined ? [...deps.config.servers.values()] : [findServer(deps, request.serverId, 'server_id')]
  const deleted: string[] = []
  for (const server of servers) {
    const owner = ownerOf(caller, server)
    // Under the refresh lock: a refresh in flight would otherwise store its token after this removal.
    if (await withRefreshLock(deps.oauth, owner, () => deps.tokens.remove(owner))) deleted.push(server.serverId)
    await deps.pool.drop(poolKey(owner))
    if (server.toolCache === 'user') await deps.toolCache.drop(toolCacheKey(server, owner))
    await deps.stepUps.delete(storeKey(owner.tenant, owner.userId, owner.serverId))
  }
  deps.logger.info({ tenant: caller.tenant, servers: deleted }, 'tokens reset')
  return {
    user_id: caller.userId,
    deleted_server_ids: deleted,
    message:
      deleted.length === 0
        ? 'No stored sign-in was found for this user.'
        : `Signed out of ${deleted.join(', ')}. The next call will ask the user to sign in again.`,
  }
}
