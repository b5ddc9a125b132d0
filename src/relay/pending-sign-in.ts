import type { ServerConfig } from '../config/load-config.ts'
import { withLock } from '../store/lock.ts'
import type { PendingSignInStore } from '../store/pending-sign-ins.ts'
import { tokenKey, type TokenOwner } from '../store/tokens.ts'
import { matchesConfirmationCode } from './confirmation-code.ts'
import { auditOf, type RelayDeps } from './deps.ts'
import { storeSignedInToken } from './sign-in.ts'

/**
 * SIGN_IN_CONFIRMATION=code (DESIGN.md §6): a sign-in completed in a browser is held until the
 * person who asked for it gives the assistant the one-time code that browser was shown. A victim
 * lured into completing someone else's link links nothing unless they also hand over the code.
 */

/** Wrong codes a pending sign-in survives; the fifth discards it (DESIGN.md §6). */
export const MAX_WRONG_CODES = 5

/** The need-auth answer while a sign-in waits for its code: no login link (no new link while pending). */
export interface PendingAnswer {
  readonly kind: 'need-auth'
  readonly pendingConfirmation: true
  readonly message: string
}

export type ConfirmOutcome =
  | { kind: 'confirmed' }
  | { kind: 'wrong'; triesLeft: number }
  /** The fifth wrong code: the pending sign-in is gone. */
  | { kind: 'discarded' }
  /** Nothing waits for a code. */
  | { kind: 'none' }

function pendingMessage(server: ServerConfig): string {
  return `The sign-in to ${server.description || server.serverId} is waiting for confirmation. Ask the user for the confirmation code the sign-in page showed them (ten letters and digits, like XXXXX-XXXXX), then call mcp_auth_status with confirm_code set to it and server_id "${server.serverId}". Do not ask them to sign in again.`
}

/** The pending-confirmation answer for `owner`, or undefined when nothing waits (always, in page mode). */
export async function pendingSignIn(deps: RelayDeps, owner: TokenOwner, server: ServerConfig): Promise<PendingAnswer | undefined> {
  if (deps.config.signInConfirmation !== 'code') return undefined
  const pending = await deps.pendingSignIns.get(owner)
  return pending && { kind: 'need-auth', pendingConfirmation: true, message: pendingMessage(server) }
}

/**
 * Tries `code` on `owner`'s pending sign-in. Under a lock per owner across replicas, so that
 * concurrent guesses are each counted: five wrong codes, whoever sends them, discard it. The
 * right code moves the token to the token store through the same write as a page-mode sign-in.
 */
export function confirmSignIn(deps: RelayDeps, owner: TokenOwner, server: ServerConfig, code: string): Promise<ConfirmOutcome> {
  return confirmPending(deps, deps.pendingSignIns, owner, code, (token) => storeSignedInToken(deps, server, owner, token))
}

/**
 * `code` tried on what `pendings` holds for `owner` (a server's token, or the provider's
 * identity), under a lock per owner across replicas; the right code hands it to `activate`.
 */
export function confirmPending<T>(deps: RelayDeps, pendings: PendingSignInStore<T>, owner: TokenOwner, code: string, activate: (held: T) => Promise<void>): Promise<ConfirmOutcome> {
  return withLock(
    deps.oauth.lock,
    `confirm:${tokenKey(owner)}`,
    async () => {
      const pending = await pendings.get(owner)
      if (!pending) return { kind: 'none' }
      if (matchesConfirmationCode(owner, code, pending.codeHash)) {
        await activate(pending.token)
        await pendings.remove(owner)
        deps.logger.info({ event: 'sign_in.confirmed', ...auditOf(owner) }, 'sign-in confirmed with its code')
        return { kind: 'confirmed' }
      }
      const wrongTries = pending.wrongTries + 1
      if (wrongTries >= MAX_WRONG_CODES) {
        await pendings.remove(owner)
        deps.logger.warn(
          { event: 'sign_in.refused', reason: 'code', ...auditOf(owner), wrongTries, discarded: true },
          'sign-in refused: too many wrong confirmation codes, discarded',
        )
        return { kind: 'discarded' }
      }
      await pendings.recordWrongTry(owner, pending)
      deps.logger.warn({ event: 'sign_in.refused', reason: 'code', ...auditOf(owner), wrongTries }, 'sign-in refused: wrong confirmation code')
      return { kind: 'wrong', triesLeft: MAX_WRONG_CODES - wrongTries }
    },
    { ttlMs: 10_000, waitMs: deps.config.upstreamTimeoutMs + 10_000 },
  )
}

/** force_reauth while a sign-in waits (a server's, or the provider's): it is dropped, and the user gets a new link. */
export async function discardPending<T>(deps: RelayDeps, pendings: PendingSignInStore<T>, owner: TokenOwner): Promise<void> {
  if (deps.config.signInConfirmation !== 'code') return
  if (await pendings.remove(owner)) {
    deps.logger.info({ event: 'sign_in.refused', reason: 'force_reauth', ...auditOf(owner) }, 'pending sign-in discarded for a new one')
  }
}

/** What each answer shape carries for a need-auth outcome: the login link, or the pending flag. */
export function needAuthFields(
  access: { loginUrl: string } | { pendingConfirmation: true },
): { login_url: string } | { pending_confirmation: true } {
  return 'pendingConfirmation' in access ? { pending_confirmation: true } : { login_url: access.loginUrl }
}

/** The message of a confirm_code answer for one server, or undefined to keep the usual one. */
export function confirmMessage(outcome: ConfirmOutcome, server: ServerConfig): string | undefined {
  switch (outcome.kind) {
    case 'confirmed':
      return 'Signed in: the confirmation code was right.'
    case 'wrong':
      return `That confirmation code is not right (${outcome.triesLeft} ${outcome.triesLeft === 1 ? 'try' : 'tries'} left). ${pendingMessage(server)}`
    case 'discarded':
      return `Too many wrong confirmation codes: that sign-in was discarded. Open the login_url to sign in again.`
    case 'none':
      return undefined
  }
}
