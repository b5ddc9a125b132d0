import { createHash, timingSafeEqual } from 'node:crypto'
import type { SealedMap } from './sealed-map.ts'
import type { TokenOwner } from './tokens.ts'

/** One sign-in in progress, found by its OAuth `state` (stored sealed: it holds the PKCE verifier). */
export interface SignInFlow extends TokenOwner {
  readonly codeVerifier: string
  readonly redirectUri: string
  readonly resource: string
  readonly scope: string | undefined
  readonly issuer: string
  readonly clientId: string
  /** SHA-256 (base64url) of the browser-binding cookie of the browser that pressed Continue. */
  readonly browserHash: string
}

const FLOW_TTL_MS = 10 * 60 * 1000

export type TakenFlow =
  | { kind: 'flow'; flow: SignInFlow }
  /** A live flow, but the callback came without the cookie of the browser that started it: left as it is. */
  | { kind: 'other-browser'; owner: TokenOwner }
  | { kind: 'none' }

export interface FlowStore {
  start(state: string, flow: SignInFlow): Promise<void>
  /**
   * The flow for this state, once, and only for the browser that started it (RFC 9700 §4.7):
   * the binding is checked before the flow is used up, so a callback URL replayed in another
   * browser changes nothing and the right browser still completes.
   */
  take(state: string, browserHash: string | undefined): Promise<TakenFlow>
}

export function createFlowStore(deps: { map: SealedMap<SignInFlow> }): FlowStore {
  return {
    start: (state, flow) => deps.map.set(flowKey(state), flow, FLOW_TTL_MS),
    async take(state, browserHash) {
      const key = flowKey(state)
      const flow = await deps.map.get(key)
      if (!flow) return { kind: 'none' }
      if (!sameHash(flow.browserHash, browserHash)) {
        return { kind: 'other-browser', owner: { tenant: flow.tenant, userId: flow.userId, serverId: flow.serverId } }
      }
      // Only the caller whose delete removed it may use it (two tabs, two replicas).
      if (!(await deps.map.delete(key))) return { kind: 'none' }
      return { kind: 'flow', flow }
    },
  }
}

function sameHash(stored: string | undefined, given: string | undefined): boolean {
  if (typeof stored !== 'string' || given === undefined) return false
  const a = Buffer.from(stored)
  const b = Buffer.from(given)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** Stored under the state's SHA-256, so a copy of the store holds no live `state`. */
function flowKey(state: string): string {
  return `state:${createHash('sha256').update(state).digest('base64url')}`
}
