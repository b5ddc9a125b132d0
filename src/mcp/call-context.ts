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
 * - `ended`: aborted once the call has ended. A request the call made and still waits on (the SDK
 *   gave up on it at its timeout, and a 2025-era server keeps its event stream open) is then cut,
 *   so that no connection outlives the call that needed it. What outlives a call in its async
 *   context otherwise (the 2025-era session it opened, its GET stream and that stream's
 *   reconnects) is no longer this call's.
 */
export interface CallContext {
  readonly accessToken: string | undefined
  readonly budget: { left: number; readonly total: number } | undefined
  readonly ended: AbortSignal
}

const calls = new AsyncLocalStorage<CallContext>()

/** Runs `fn` as a call with `accessToken`; ends the call when `fn` settles. */
export async function runInCall<T>(accessToken: string | undefined, fn: () => Promise<T>): Promise<T> {
  const ended = new AbortController()
  try {
    return await calls.run({ accessToken, budget: undefined, ended: ended.signal }, fn)
  } finally {
    ended.abort()
  }
}

/**
 * Runs `fn` as a part of the call in progress with a bound of its own on all its answers together
 * (the pages of one tools/list), with the call's token; it ends with the call.
 */
export function withBudget<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
  const call = liveCall()
  if (!call) return fn()
  return calls.run({ ...call, budget: { left: bytes, total: bytes } }, fn)
}

/** The call in progress in this async context, unless it has ended. */
export function liveCall(): CallContext | undefined {
  const call = calls.getStore()
  return call && !call.ended.aborted ? call : undefined
}
