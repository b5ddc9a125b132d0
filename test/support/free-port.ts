import { createServer } from 'node:net'

/** A port that was free a moment ago on 127.0.0.1 (for a relay whose PUBLIC_BASE_URL must name it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
