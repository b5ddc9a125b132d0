/**
 * What the relay tells its operator about its work (DESIGN.md §4, `/metrics`). The relay parts
 * record events through this interface; `http/metrics.ts` implements it over a prom-client
 * registry, and tests or a relay without metrics use `noMetrics`. Label values are only ever
 * configured server ids and fixed words: never a user, tenant, ticket or token.
 */
export interface RelayMetrics {
  /** Runs one upstream MCP operation (tools/call, tools/list) and records its latency and outcome. */
  timeUpstream<T>(serverId: string, run: () => Promise<T>): Promise<T>
  /** One refresh attempt's outcome, as refreshUpstreamToken reports it (DESIGN.md §5). */
  recordRefresh(serverId: string, outcome: RefreshMetricOutcome): void
  /** A browser came back to /oauth/callback; `completed` when the code exchange gave a token (stored, or held for its confirmation code). */
  recordSignIn(serverId: string, outcome: 'completed' | 'failed'): void
  /** A tools/list cache lookup for a caller allowed to use the cache. */
  recordToolCache(serverId: string, result: 'hit' | 'miss'): void
  /** Reports the pool's current size whenever metrics are read. */
  watchPool(size: () => number): void
}

/** `token`: a usable token came back; `sign-in`: the grant is gone; `transient`: try again later. */
export type RefreshMetricOutcome = 'token' | 'sign-in' | 'transient'

/** Records nothing. */
export const noMetrics: RelayMetrics = {
  timeUpstream: (_serverId, run) => run(),
  recordRefresh() {},
  recordSignIn() {},
  recordToolCache() {},
  watchPool() {},
}
