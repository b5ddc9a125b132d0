import { createClient } from '@keyv/redis'
import type { StoreLogger } from './store-logger.ts'

/** Reconnect delay cap: a Redis that comes back is used again within about this long. */
const MAX_RECONNECT_DELAY_MS = 1000
const CONNECT_TIMEOUT_MS = 1500

/**
 * The one Redis client every namespace and the lock share. Failure handling:
 * - the offline queue is off, so while disconnected a command fails at once instead of waiting
 *   (unboundedly) for a reconnect;
 * - it reconnects forever with a capped backoff, so it recovers by itself when Redis returns;
 * - losing and regaining the connection is logged once each, not once per retry.
 */
export function createRedisClient(url: string, logger: StoreLogger) {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS),
    },
  })
  let healthy = true
  client.on('error', (error: unknown) => {
    if (!healthy) return
    healthy = false
    logger.warn({ kind: 'redis', err: error }, 'store connection lost, reconnecting')
  })
  client.on('ready', () => {
    if (healthy) return
    healthy = true
    logger.info({ kind: 'redis' }, 'store connection restored')
  })
  return client
}

export type RedisClient = ReturnType<typeof createRedisClient>
