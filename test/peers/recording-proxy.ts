// A forward proxy on loopback that records what it was asked, for the proxy tests (DESIGN.md §6):
// `CONNECT host:port` (a tunnel: the proxy sees only encrypted bytes) or a plain request with an
// absolute URI (the proxy reads it all, headers and body). Every tunnel leads to one loopback
// port, whatever host it names: the proxy resolves names itself, so made-up names and public
// addresses in a test all reach the peer behind it. Plain requests are recorded and answered
// 502: a test that sees one has already failed.
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { readBody } from './read-body.ts'

export type ProxiedRequest =
  | { kind: 'connect'; target: string }
  | { kind: 'plain'; method: string; url: string; body: string }

export interface RecordingProxy {
  /** http://127.0.0.1:PORT, for HTTPS_PROXY / HTTP_PROXY. */
  readonly url: string
  readonly requests: ProxiedRequest[]
  close(): Promise<void>
}

export async function startRecordingProxy(tunnelToPort: number): Promise<RecordingProxy> {
  const requests: ProxiedRequest[] = []
  // Tunnels leave the HTTP server's hands: closed by hand at the end.
  const tunnels = new Set<Duplex | Socket>()
  const server: Server = createServer((req, res) => {
    readBody(req).then(
      (body) => {
        requests.push({ kind: 'plain', method: req.method ?? '', url: req.url ?? '', body })
        res.writeHead(502, { 'content-type': 'text/plain' }).end('this proxy only tunnels')
      },
      () => res.destroy(),
    )
  })
  server.on('connect', (req, client, head) => {
    requests.push({ kind: 'connect', target: req.url ?? '' })
    const upstream = connect(tunnelToPort, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    for (const socket of [client, upstream]) {
      tunnels.add(socket)
      socket.once('close', () => tunnels.delete(socket))
    }
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of tunnels) socket.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
