import { RelayError } from '../errors.ts'
import type { RelayDeps } from './deps.ts'
import { reset } from './reset.ts'
import type { AdminCaller, ConnectionsRequest, ConnectionsResult, ResetResult } from './types.ts'

/**
 * GET /admin/connections: the stored connections matching the filters, a page at a time, in
 * key order (tenant, user, server) on every store. Never a token value: only when and for what
 * each token was obtained. The cursor is the last listed key, opaque to the caller.
 */
export async function listConnections(deps: RelayDeps, admin: AdminCaller, request: ConnectionsRequest): Promise<ConnectionsResult> {
  const filter = {
    ...(request.tenant === undefined ? {} : { tenant: request.tenant }),
    ...(request.userId === undefined ? {} : { userId: request.userId }),
    ...(request.serverId === undefined ? {} : { serverId: request.serverId }),
  }
  const page = await deps.tokens.list(filter, { after: request.cursor === undefined ? undefined : decodeCursor(request.cursor), limit: request.limit })
  deps.logger.info(
    {
      event: 'admin.connections',
      tenant: request.tenant ?? null,
      userId: request.userId ?? null,
      serverId: request.serverId ?? null,
      adminKey: admin.adminKey,
      count: page.entries.length,
    },
    'admin listed connections',
  )
  return {
    connections: page.entries.map(({ owner, token }) => ({
      tenant: owner.tenant,
      user_id: owner.userId,
      server_id: owner.serverId,
      obtained_at: new Date(token.obtainedAt).toISOString(),
      expires_at: token.expiresAt === undefined ? null : new Date(token.expiresAt).toISOString(),
      scope: token.scope ?? null,
      refreshable: token.refreshToken !== undefined,
    })),
    next_cursor: page.next === undefined ? null : Buffer.from(page.next).toString('base64url'),
  }
}

/** POST /admin/reset: /oauth/reset (with revocation) for any tenant's user. */
export async function adminReset(
  deps: RelayDeps,
  admin: AdminCaller,
  request: { tenant: string; userId: string; serverId: string | undefined },
): Promise<ResetResult> {
  deps.logger.info(
    { event: 'admin.reset', tenant: request.tenant, userId: request.userId, serverId: request.serverId ?? null, adminKey: admin.adminKey },
    'admin reset',
  )
  return reset(deps, { tenant: request.tenant, userId: request.userId }, { serverId: request.serverId })
}

function decodeCursor(cursor: string): string {
  const key = Buffer.from(cursor, 'base64url').toString('utf8')
  // Keys are ASCII (store/keys.ts); anything else is not a cursor this relay gave out.
  if (!/^[\x21-\x7e]+$/.test(key) || Buffer.from(key).toString('base64url') !== cursor) {
    throw new RelayError('INVALID_INPUT', 'cursor: is not a next_cursor this relay gave out')
  }
  return key
}
