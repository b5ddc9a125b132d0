import { createServer, connect, type Server, type Socket } from 'node:net'

export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * A loopback TCP proxy in front of a real server, to make it vanish (`stop`: connections reset,
 * port closed), come back on the same port (`start`), or stop answering while connections stay
 * open (`freeze`: a network black hole).
 */
export async function startTcpProxy(targetPort: number) {
  const port = await freePort()
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let frozen = false

  function relay(client: Socket) {
    const upstream = connect(targetPort, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => socket.destroy()) // a reset here is the outage under test
    }
    client.on('data', (chunk) => frozen || upstream.write(chunk))
    upstream.on('data', (chunk) => frozen || client.write(chunk))
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  }

  async function start(): Promise<void> {
    frozen = false
    const listening = createServer(relay)
    server = listening
    await new Promise<void>((resolve) => listening.listen(port, '127.0.0.1', resolve))
  }

  async function stop(): Promise<void> {
    for (const socket of sockets) socket.resetAndDestroy()
    const closing = server
    server = undefined
    if (closing) await new Promise((resolve) => closing.close(resolve))
  }

  await start()
  return {
    port,
    start,
    stop,
    freeze: () => {
      frozen = true
    },
  }
}
