import type { ServerConfig } from '../config/load-config.ts'
import type { RelayDeps } from './deps.ts'
import type { TokenOwner } from '../store/tokens.ts'
import { confirmMessage, confirmSignIn, discardPending, needAuthFields, pendingSignIn } from './pending-sign-in.ts'
import { selectServers } from './select-servers.ts'
import { enterpriseStatus } from './enterprise.ts'
import { createLoginLink } from './sign-in-link.ts'
import type { AuthStatusResult, Caller, ServerStatusEntry } from './types.ts'
import { userSignIn } from './user-sign-in.ts'
import { tokenSourceFor, withUpstream } from './upstream-access.ts'

const USAGE =
  'For each server with status "need_auth", show its login_url to the user as a link and ask them to sign in, then call mcp_auth_status again. "authorized" and "no_auth_required" servers are ready: call mcp_tool_list.'

/** mcp_auth_status: each selected server's sign-in state for this user, with login links. */
export async function authStatus(
  deps: RelayDeps,
  caller: Caller,
  request: { serverIds: string[] | undefined; forceReauth: boolean; confirmCode?: string | undefined },
): Promise<AuthStatusResult> {
  const servers = selectServers(deps, request.serverIds)
  const entries = await Promise.all(servers.map((server) => statusOf(deps, caller, server, request)))
  return {
    all_authorized: entries.every((entry) => entry.status === 'authorized' || entry.status === 'no_auth_required'),
    authorized_server_ids: entries.filter((entry) => entry.status === 'authorized').map((entry) => entry.server_id),
    need_auth_server_ids: entries.filter((entry) => entry.status === 'need_auth').map((entry) => entry.server_id),
    servers: entries,
    errors: entries.filter((entry) => entry.status === 'error').map((entry) => ({ server_id: entry.server_id, error: entry.message })),
    usage: USAGE,
  }
}

async function statusOf(
  deps: RelayDeps,
  caller: Caller,
  server: ServerConfig,
  request: { forceReauth: boolean; confirmCode?: string | undefined },
): Promise<ServerStatusEntry> {
  const source = tokenSourceFor(server)
  const owner = source.ownerOf(caller, server)
  if (source.auth === 'service_account') {
    // Never a login link (force_reauth and confirm_code do not apply): the server's one token, obtained if need be.
    const base = { server_id: server.serverId, description: server.description }
    const current = await source.current(deps, server, owner)
    if (current.kind === 'token') return { ...base, status: 'authorized', auth: 'service_account', message: 'Connected through the server\'s service account; no sign-in needed.' }
    return { ...base, status: 'error', message: current.kind === 'none' ? 'No service account token.' : current.message }
  }
  if (source.auth === 'enterprise') return enterpriseStatus(deps, caller, server, request)
  const { forceReauth } = request
  // SIGN_IN_CONFIRMATION=code: force_reauth drops a sign-in waiting for its code (a new link
  // follows); confirm_code tries the code on it. Either way the answer below says where it stands.
  let note: string | undefined
  if (forceReauth) await discardPending(deps, deps.pendingSignIns, owner)
  else if (request.confirmCode !== undefined && deps.config.signInConfirmation === 'code') {
    note = confirmMessage(await confirmSignIn(deps, owner, server, request.confirmCode), server)
  }
  const entry = await currentStatus(deps, caller, server, owner, forceReauth)
  // An error (discovery failing, say) keeps its own message: it says what is wrong now.
  return note === undefined || entry.status === 'error' ? entry : { ...entry, message: note }
}

/** A user sign-in server's state for this user: pending, signed in (refreshed if due), or what to do. */
async function currentStatus(
  deps: RelayDeps,
  caller: Caller,
  server: ServerConfig,
  owner: TokenOwner,
  forceReauth: boolean,
): Promise<ServerStatusEntry> {
  const base = { server_id: server.serverId, description: server.description }
  const pending = forceReauth ? undefined : await pendingSignIn(deps, owner, server)
  if (pending) return { ...base, status: 'need_auth', pending_confirmation: true, message: pending.message }
  const token = await deps.tokens.get(owner)
  if (forceReauth && token) {
    // force_reauth: a fresh link for a signed-in user; completing it replaces the token.
    const link = await createLoginLink(deps, owner, server, { scope: undefined })
    if (link.kind === 'error') return { ...base, status: 'error', message: link.message }
    return { ...base, status: 'need_auth', login_url: link.loginUrl, message: 'Open the login_url to sign in again (for example as another account).' }
  }
  if (token) {
    // "authorized" means a usable token is stored: no upstream call unless it must be refreshed.
    const fresh = await userSignIn.current(deps, server, owner, token)
    if (fresh.kind === 'token') return { ...base, status: 'authorized', auth: 'user', message: 'Signed in.' }
    if (fresh.kind === 'need-auth') return { ...base, status: 'need_auth', ...needAuthFields(fresh), message: fresh.message }
    return { ...base, status: 'error', message: fresh.kind === 'error' ? fresh.message : 'No token.' }
  }
  // Without a token, a request is the probe that tells an open server from one that wants
  // sign-in (it answers 401 with its challenge): opening a 2025-era session is one; a 2026-07-28
  // client opens without a round trip, so it asks `server/discover`.
  const access = await withUpstream(deps, caller, server, async (client, timeoutMs) => {
    if (client.getProtocolEra() === 'modern') await client.discover({ timeout: timeoutMs })
  })
  switch (access.kind) {
    case 'ok':
      return access.authorized
        ? { ...base, status: 'authorized', auth: 'user', message: 'Signed in.' }
        : { ...base, status: 'no_auth_required', message: 'This server needs no sign-in.' }
    case 'need-auth':
      return { ...base, status: 'need_auth', ...needAuthFields(access), message: access.message }
    case 'error':
      return { ...base, status: 'error', message: access.message }
  }
}
