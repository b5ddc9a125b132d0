// The bench's 2026-07-28 upstreams, in one process of their own: the test peer built with
// @modelcontextprotocol/server 2.x (test/peers/modern-upstream.ts: stateless, one McpServer per
// HTTP request as the SDK's createMcpHandler builds it), with the tool `echo` alone, as an OAuth
// protected resource checking each user's bearer token (an Ed25519 JWT), twice:
// - `modern`: tools/list with the SDK's default caching hints (ttlMs 0, cacheScope private), what
//   a server built on the SDK sends unless its author says otherwise: the relay keeps one list
//   per user;
// - `modern-public`: cacheScope public, ttlMs 1 h: one list for every user.
// The parent passes the issuer's public key; it asks for counters over IPC.
import { startModernUpstream, type ModernUpstream } from '../test/peers/modern-upstream.ts'
import { startIssuer } from './access-tokens.ts'
import { childInput } from './harness.ts'

const { publicJwk } = childInput<{ publicJwk: object }>()
const issuer = await startIssuer(publicJwk)
const peers: Record<string, ModernUpstream> = {
  modern: await startModernUpstream({ auth: { issuer: issuer.issuer }, tools: 'echo' }),
  'modern-public': await startModernUpstream({ auth: { issuer: issuer.issuer }, tools: 'echo', listHints: { cacheScope: 'public', ttlMs: 3_600_000 } }),
}

/** POSTs per peer by JSON-RPC method (Mcp-Method header), since the start; `seen` is emptied as it is counted. */
const methods: Record<string, Record<string, number>> = Object.fromEntries(Object.keys(peers).map((serverId) => [serverId, {}]))

process.send!({ type: 'ready', issuer: issuer.issuer, urls: Object.fromEntries(Object.entries(peers).map(([serverId, peer]) => [serverId, peer.url])) })
process.on('message', (message: { type?: string }) => {
  if (message.type !== 'counters') return
  const counters = Object.fromEntries(
    Object.entries(peers).map(([serverId, peer]) => {
      const byMethod = methods[serverId]!
      for (const seen of peer.seen) byMethod[seen.mcpMethod ?? '(no Mcp-Method)'] = (byMethod[seen.mcpMethod ?? '(no Mcp-Method)'] ?? 0) + 1
      peer.seen.length = 0
      return [serverId, { requests: peer.counters.requests, byMethod: { ...byMethod } }]
    }),
  )
  process.send!({ type: 'counters', counters })
})
process.on('disconnect', () => {
  void Promise.all([...Object.values(peers).map((peer) => peer.close()), issuer.close()]).finally(() => process.exit(0))
})
