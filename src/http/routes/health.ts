import type { FastifyInstance } from 'fastify'
import { RelayError } from '../../errors.ts'
import type { RelayService } from '../../relay/types.ts'

export interface HealthRoutesOptions {
  relay: RelayService
}

/** Liveness (the process answers) and readiness (its store answers). */
export async function healthRoutes(fastify: FastifyInstance, options: HealthRoutesOptions): Promise<void> {
  const { relay } = options
  // Probes arrive every few seconds from Docker and Kubernetes: their request lines stay out of
  // the log; a failing readiness check is still logged (an error, at error level).
  const quiet = { logLevel: 'warn' } as const

  fastify.get('/healthz', quiet, async () => ({ status: 'ok' }))

  fastify.get('/readyz', quiet, async () => {
    try {
      await relay.checkReady()
    } catch (error) {
      // Whatever broke, the relay cannot serve: readiness answers 503 either way.
      if (error instanceof RelayError && error.code === 'STORE_UNAVAILABLE') throw error
      throw new RelayError('STORE_UNAVAILABLE', 'the store does not answer', { cause: error })
    }
    return { status: 'ready' }
  })
}
