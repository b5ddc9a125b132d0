import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The relay call in progress, for the upstream requests it makes (read by the fetch under every
 * SDK transport, mcp/upstream-fetch.ts):
 * - `accessToken`: the token this call sends. A 2025-era session is shared by one user's
 *   concurrent calls and a 2026-07-28 client by every user of its server, so the token cannot
 *   live on the client: a call still holding the previous token could otherwise put it on the
 *   retry of a call that has just refreshed, or on another user's request.
 * - `budget`: what is left of the bounds on all answers of this call together, in bytes and in JSON
 *   items (a tools/list walks many pages), when it has them.
 * - `ended`: aborted once the call has ended. A request the call made and still waits on (the SDK
 *   gave up on it at its timeout, and a 2025-era server keeps its event stream open) is then cut,
 *   so that no connection outlives the call that needed it. What outlives a call in its async
 *   context otherwise (the 2025-era session it opened, its GET stream and that stream's
 *   reconnects) is no longer this call's.
 */
export interface CallContext {
  readonly accessToken: string | undefined
  readonly budget: CallBudget | undefined
  readonly ended: AbortSignal
}

/** What is left of a call's bounds on all of its answers together (bytes, and JSON items: json-shape.ts). */
export interface CallBudget {
  left: number
  readonly total: number
  itemsLeft: number
  readonly itemsTotal: number
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
 * Runs `fn` as a part of the call in progress with bounds of its own on all its answers together
 * (the pages of one tools/list), with the call's token; it ends with the call.
 */
export function withBudget<T>(bounds: { bytes: number; items: number }, fn: () => Promise<T>): Promise<T> {
  const call = liveCall()
  if (!call) return fn()
  return calls.run({ ...call, budget: { left: bounds.bytes, total: bounds.bytes, itemsLeft: bounds.items, itemsTotal: bounds.items } }, fn)
}

/** The call in progress in this async context, unless it has ended. */
export function liveCall(): CallContext | undefined {
  const call = calls.getStore()
  return call && !call.ended.aborted ? call : undefined
}
