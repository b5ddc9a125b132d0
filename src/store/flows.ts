import { createHash } from 'node:crypto'
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
}

const FLOW_TTL_MS = 10 * 60 * 1000

export interface FlowStore {
  start(state: string, flow: SignInFlow): Promise<void>
  /** The flow for this state, once: a replayed callback finds nothing. */
  take(state: string): Promise<SignInFlow | undefined>
}

export function createFlowStore(deps: { map: SealedMap<SignInFlow> }): FlowStore {
  return {
    start: (state, flow) => deps.map.set(flowKey(state), flow, FLOW_TTL_MS),
    async take(state) {
      const key = flowKey(state)
      const flow = await deps.map.get(key)
      if (!flow || !(await deps.map.delete(key))) return undefined
      return flow
    },
  }
}

/** Stored under the state's SHA-256, so a copy of the store holds no live `state`. */
function flowKey(state: string): string {
  return `state:${createHash('sha256').update(state).digest('base64url')}`
}
