import type { DiscoverResult } from '@modelcontextprotocol/client'
import type { Keyv } from 'keyv'
import type { ServerConfig } from '../config/load-config.ts'
import { storeKey } from '../store/keys.ts'

/** What the relay knows of the MCP revision a server speaks (DESIGN.md §5, "Protocol revisions"). */
export type EraVerdict = { readonly era: 'modern'; readonly discover: DiscoverResult } | { readonly era: 'legacy' }

/** Kept for every replica this long, then asked again (DESIGN.md §5, the `eras` namespace). */
const VERDICT_TTL_MS = 24 * 60 * 60 * 1000

export interface EraStore {
  /**
   * The verdict for `server`: the configured `protocol` when it is `2025-11-25`, else the one this
   * process or any replica found (a probe running in this process is waited for), else undefined.
   */
  get(server: ServerConfig): Promise<EraVerdict | undefined>
  /**
   * Runs `probe` for `server` unless one is running in this process already (concurrent first
   * calls share one probe) and keeps the verdict it finds. The probe's own failure (a 401 before
   * sign-in is no verdict) is thrown to the caller that ran it.
   */
  probe(server: ServerConfig, probe: () => Promise<EraVerdict | undefined>): Promise<EraVerdict | undefined>
  /** The server stopped answering in its era: forget the verdict here and in the store. */
  forget(server: ServerConfig): Promise<void>
}

/**
 * Era verdicts in the store's `eras` namespace (24 h), with this process's copy in memory so that
 * a call to a known server reads nothing (a warm call never probes, and a cold one reads the store
 * at most once per server and process).
 */
export function createEraStore(deps: { keyv: Keyv; now: () => number }): EraStore {
  const known = new Map<string, { verdict: EraVerdict; until: number }>()
  const probing = new Map<string, Promise<EraVerdict | undefined>>()
  // The mcp_url is part of the key: editing a server's URL asks it afresh.
  const keyOf = (server: ServerConfig) => storeKey(server.serverId, server.mcpUrl)

  function remember(key: string, verdict: EraVerdict, until: number): EraVerdict {
    known.set(key, { verdict, until })
    return verdict
  }

  return {
    async get(server) {
      if (server.protocol === '2025-11-25') return LEGACY
      const key = keyOf(server)
      const held = known.get(key)
      if (held && held.until > deps.now()) return held.verdict
      const running = probing.get(key)
      if (running) return running
      const stored = (await deps.keyv.get(key)) as { verdict: EraVerdict; until: number } | undefined
      if (!stored || !isFor(server, stored.verdict)) return undefined
      return remember(key, stored.verdict, stored.until)
    },
    probe(server, probe) {
      const key = keyOf(server)
      const running = probing.get(key)
      // Someone else's probe that failed (their missing token, their timeout) is not this
      // caller's failure: it probes with its own access then.
      if (running) return running.catch(() => this.probe(server, probe))
      const started = (async () => {
        const verdict = await probe()
        if (verdict === undefined) return undefined
        const until = deps.now() + VERDICT_TTL_MS
        await deps.keyv.set(key, { verdict, until }, VERDICT_TTL_MS)
        return remember(key, verdict, until)
      })().finally(() => probing.delete(key))
      probing.set(key, started)
      return started
    },
    async forget(server) {
      const key = keyOf(server)
      known.delete(key)
      await deps.keyv.delete(key)
    },
  }
}

const LEGACY: EraVerdict = Object.freeze({ era: 'legacy' })

/** A stored verdict that the server's configured `protocol` rules out is not used (it was configured since). */
function isFor(server: ServerConfig, verdict: EraVerdict): boolean {
  return server.protocol !== '2026-07-28' || verdict.era === 'modern'
}
