import { open } from 'node:fs/promises'
import type { DpopMode } from '../config/load-config.ts'
import type { TokenOwner, UpstreamToken } from '../store/tokens.ts'
import { ServiceAccountRefusedError, ServiceAccountUnavailableError, type ServiceTokenDeps } from './client-credentials.ts'
import type { ServerAuth } from './discovery.ts'
import { serverWords } from './error-description.ts'
import { redeemAssertion } from './jwt-bearer.ts'
import { describeOAuthFailure } from './oauth-errors.ts'
import type { ClientRegistration } from './registration.ts'
import { withRefreshLock } from './refresh.ts'

/** A JWT is a few kilobytes; anything much larger in the file is not one. */
const MAX_ASSERTION_BYTES = 64 * 1024

/** The assertion file could not be read, or holds nothing: the operator (or the platform writing it) must fix it. */
export class WorkloadAssertionError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'WorkloadAssertionError'
  }
}

// Token requests running in this process, per store: concurrent callers share one.
const inProcess = new WeakMap<object, Map<string, Promise<UpstreamToken>>>()

/**
 * A new token for a workload identity server (`grant_type: workload_identity`, DESIGN.md §3):
 * the JWT in the assertion file, read anew now (a platform that rotates it, such as a
 * Kubernetes projected service account token, needs nothing else), redeemed with the JWT bearer
 * grant (RFC 7523 §2.1). Outcomes, as for a service account (client-credentials.ts):
 * - a token: a new one, or one another request or replica stored meanwhile;
 * - throws ServiceAccountRefusedError: the server refused the assertion (no other grant is tried);
 * - throws ServiceAccountUnavailableError: it failed for now;
 * - throws WorkloadAssertionError: the file cannot be read.
 * One token per server, single-flight in this process and across replicas.
 */
export function obtainWorkloadToken(
  deps: ServiceTokenDeps,
  owner: TokenOwner,
  stale: UpstreamToken | undefined,
  server: () => Promise<{ auth: ServerAuth; client: ClientRegistration; scope: string | undefined; dpop: DpopMode; assertionFile: string }>,
): Promise<UpstreamToken> {
  const running = inProcess.get(deps.serviceTokens) ?? new Map<string, Promise<UpstreamToken>>()
  inProcess.set(deps.serviceTokens, running)
  const joined = running.get(owner.serverId)
  if (joined) return joined
  const obtaining = withRefreshLock(deps, owner, async (leaseLost) => {
    // Waiters re-read the store after the lock instead of asking again.
    const current = await deps.serviceTokens.get(owner)
    if (current && current.accessToken !== stale?.accessToken) return current
    const { auth, client, scope, dpop, assertionFile } = await server()
    const assertion = await readAssertion(assertionFile)
    let token: UpstreamToken
    try {
      token = await redeemAssertion(deps, { auth, client, assertion, scope, dpop, signal: leaseLost })
    } catch (error) {
      throw refusal(deps, owner, error, assertion)
    }
    deps.logger.info({ event: 'service_account.ok', grant: 'workload_identity', ...audit(owner) }, 'workload identity token obtained')
    await deps.serviceTokens.put(owner, token)
    return token
  }).finally(() => running.delete(owner.serverId))
  running.set(owner.serverId, obtaining)
  return obtaining
}

/** The file's content, trimmed (a token file often ends with a newline). */
export async function readAssertion(path: string): Promise<string> {
  let text: string
  try {
    const file = await open(path, 'r')
    try {
      const buffer = Buffer.alloc(MAX_ASSERTION_BYTES + 1)
      const { bytesRead } = await file.read(buffer, 0, buffer.length, 0)
      if (bytesRead > MAX_ASSERTION_BYTES) throw new WorkloadAssertionError(`the assertion file ${path} is larger than ${MAX_ASSERTION_BYTES / 1024} KiB`)
      text = buffer.subarray(0, bytesRead).toString('utf8').trim()
    } finally {
      await file.close()
    }
  } catch (error) {
    if (error instanceof WorkloadAssertionError) throw error
    throw new WorkloadAssertionError(`the assertion file ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  if (text === '') throw new WorkloadAssertionError(`the assertion file ${path} is empty`)
  return text
}

function refusal(deps: ServiceTokenDeps, owner: TokenOwner, error: unknown, assertion: string): Error {
  const failure = describeOAuthFailure(error, `The workload identity of ${owner.serverId} could not get a token`)
  deps.logger.warn(
    { event: failure.transient ? 'service_account.failed' : 'service_account.refused', grant: 'workload_identity', ...audit(owner), oauthError: failure.oauthError },
    failure.transient ? 'workload identity token request failed, will retry' : 'workload identity assertion refused',
  )
  if (failure.transient) return new ServiceAccountUnavailableError(failure.message, { cause: error })
  const words = serverWords(error, [assertion])
  return new ServiceAccountRefusedError(`${failure.message}${words ? `: ${words}` : ''}`, { cause: error })
}

/** The audit fields (DESIGN.md §6): a shared identity's tenant and user are `*`, everyone's. */
function audit(owner: TokenOwner): { tenant: string; userId: string; serverId: string } {
  return { tenant: owner.tenant, userId: owner.userId, serverId: owner.serverId }
}
