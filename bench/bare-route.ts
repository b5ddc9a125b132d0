// (E) of the bench: a bare Fastify route, in its own process like the relay, answering POST
// /tools/list-tools with the JSON the parent sends it (the relay's own cached list-tools answer).
import Fastify from 'fastify'

const body = await new Promise<unknown>((resolve) => process.once('message', (message: { body: unknown }) => resolve(message.body)))
const app = Fastify()
app.post('/tools/list-tools', async () => body)
await app.listen({ port: 0, host: '127.0.0.1' })
process.send!({ type: 'ready', port: (app.server.address() as { port: number }).port })
process.on('disconnect', () => {
  void app.close().finally(() => process.exit(0))
})
