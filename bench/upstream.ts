// The bench's upstream, in its own process: the SDK MCP server the tests use (Streamable HTTP,
// stateful sessions, tool `echo`), open (no sign-in). The parent asks for its counters over IPC.
import { startMcpUpstream } from '../test/peers/mcp-upstream.ts'

const upstream = await startMcpUpstream()
process.send!({ type: 'ready', url: upstream.url })
process.on('message', (message: { type?: string }) => {
  if (message.type === 'counters') process.send!({ type: 'counters', counters: { ...upstream.counters, sessionsOpen: upstream.counters.sessionsOpen() } })
})
process.on('disconnect', () => {
  void upstream.close().finally(() => process.exit(0))
})
