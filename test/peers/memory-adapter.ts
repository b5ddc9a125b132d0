// oidc-provider storage for one peer authorization server: a Map with expiry and grant indexes.
// oidc-provider's own in-memory adapter warns on every start and is an LRU of 1000 entries,
// which a benchmark's thousands of grants would evict (refresh tokens vanishing as invalid_grant).
import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider'

interface Entry {
  payload: AdapterPayload
  expiresAt: number
}

// Artifacts oidc-provider revokes together when a grant is revoked (e.g. a refresh token replay).
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'])

export function createMemoryAdapter(): AdapterFactory {
  const entries = new Map<string, Entry>()
  const grantMembers = new Map<string, Set<string>>()
  const sessionByUid = new Map<string, string>()
  const byUserCode = new Map<string, string>()

  const read = (key: string): AdapterPayload | undefined => {
    const entry = entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key)
      return undefined
    }
    return entry.payload
  }

  // Drop expired entries now and then, so a long benchmark does not keep every token it ever made.
  let upserts = 0
  const sweep = () => {
    const now = Date.now()
    for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key)
    for (const [grantId, members] of grantMembers) {
      for (const key of members) if (!entries.has(key)) members.delete(key)
      if (members.size === 0) grantMembers.delete(grantId)
    }
  }

  return (model: string): Adapter => {
    const keyFor = (id: string) => `${model}:${id}`
    return {
      async upsert(id, payload, expiresIn) {
        if (++upserts % 1000 === 0) sweep()
        const key = keyFor(id)
        entries.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity })
        if (model === 'Session' && payload.uid) sessionByUid.set(payload.uid, id)
        if (payload.userCode) byUserCode.set(payload.userCode, id)
        if (GRANTABLE.has(model) && payload.grantId) {
          let members = grantMembers.get(payload.grantId)
          if (!members) grantMembers.set(payload.grantId, (members = new Set()))
          members.add(key)
        }
      },
      async find(id) {
        return read(keyFor(id))
      },
      async findByUid(uid) {
        const id = sessionByUid.get(uid)
        return id === undefined ? undefined : read(keyFor(id))
      },
      async findByUserCode(userCode) {
        const id = byUserCode.get(userCode)
        return id === undefined ? undefined : read(keyFor(id))
      },
      async consume(id) {
        const payload = read(keyFor(id))
        if (payload) payload.consumed = Math.floor(Date.now() / 1000)
      },
      async destroy(id) {
        const key = keyFor(id)
        const payload = entries.get(key)?.payload
        entries.delete(key)
        if (payload?.grantId) grantMembers.get(payload.grantId)?.delete(key)
      },
      async revokeByGrantId(grantId) {
        for (const key of grantMembers.get(grantId) ?? []) entries.delete(key)
        grantMembers.delete(grantId)
      },
    }
  }
}
