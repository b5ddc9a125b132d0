import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The relay call in progress, for the upstream requests it makes (read by the fetch under every
 * SDK transport, mcp/upstream-fetch.ts):
 * - `accessToken`: the token this call sends. A 2025-era session is shared by one user's
 *   concurrent calls and a 2026-07-28 client by every user of its server, so the token cannot
 *   live on the client: a call still holding the previous token could otherwise put it on the
 *   retry of a call that has just refreshed, or on another user's request.
 * - `budget`: what is left of the bound on all answers of this call together (a tools/list walks
 *   many pages), when it has one.
 * Once a call has ended (`ended`), what outlives it in its async context (the 2025-era session it
 * opened, its GET stream and that stream's reconnects) is no longer this call's.
 */
export interface CallContext {
  readonly accessToken: string | undefined
  readonly budget?: { left: number; readonly total: number }
  ended: boolean
}

const calls = new AsyncLocalStorage<CallContext>()

export async function runInCall<T>(call: CallContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await calls.run(call, fn)
  } finally {
    call.ended = true
  }
}

/**
 * Runs `fn` as a part of the call in progress with a bound of its own on all its answers together
 * (the pages of one tools/list), with the call's token.
 */
export function withBudget<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
  return runInCall({ accessToken: liveCall()?.accessToken, budget: { left: bytes, total: bytes }, ended: false }, fn)
}

/** The call in progress in this async context, unless it has ended. */
export function liveCall(): CallContext | undefined {
  const call = calls.getStore()
  return call && !call.ended ? call : undefined
}
