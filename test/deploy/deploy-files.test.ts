// The deployment files can't be run here (no Docker, no cluster), so this reads them and checks
// what breaks a deployment silently: variable names the relay does not read, probe paths, secret
// references, replica count, grace periods, the servers file the relay would load.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, parseAllDocuments } from 'yaml'
import { envSchema } from '../../src/config/env.ts'
import { loadConfig } from '../../src/config/load-config.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8')
const ENV_NAMES = new Set(Object.keys(envSchema.shape))
/** main.ts's bound on a graceful shutdown, read from the source so the two cannot drift apart. */
const SHUTDOWN_GRACE_SECONDS = Number(/const SHUTDOWN_GRACE_MS = ([\d_]+)/.exec(read('src/main.ts'))![1]!.replaceAll('_', '')) / 1000

/** compose's "15s" / "1m30s" as seconds. */
function durationSeconds(text: string): number {
  const match = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(text)
  if (!match || (!match[1] && !match[2])) throw new Error(`not a duration: ${text}`)
  return Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0)
}

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile')
  const stages = dockerfile.split(/^FROM /m).slice(1)
  const final = stages.at(-1)!

  it('is multi-stage on node:24-slim; the final stage installs production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2)
    for (const stage of stages) expect(stage).toMatch(/^node:24-slim\b/)
    expect(final).toMatch(/^RUN npm ci --omit=dev\b/m)
    expect(final).not.toMatch(/^RUN npm (ci|install)(?! --omit=dev)/m)
    // The sources that ship are the ones the first stage type-checked.
    expect(stages[0]).toMatch(/^RUN npx tsc --noEmit/m)
    expect(final).toMatch(/^COPY --from=check \/app\/src \.\/src$/m)
  })

  it('runs as a non-root user, with a data volume, listening on all interfaces', () => {
    expect(final).toMatch(/^USER node$/m)
    expect(final.indexOf('USER node')).toBeLessThan(final.indexOf('CMD'))
    expect(final).toMatch(/^VOLUME \/app\/data$/m)
    expect(final).toMatch(/HOST=0\.0\.0\.0/)
    expect(final).toMatch(/PORT=8787/)
    expect(final).toMatch(/^EXPOSE 8787$/m)
  })

  it('starts the relay the way npm start does', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: { start: string } }).scripts.start
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(final)![1]!) as string[]
    expect(cmd.join(' ')).toBe(start)
  })

  describe('HEALTHCHECK', () => {
    let relay: TestRelay
    beforeAll(async () => {
      relay = await startRelay({ servers: [] })
    })
    afterAll(async () => {
      await relay?.close()
    })

    // The probe is a node one-liner (node:24-slim has no curl): run the very command.
    const probe = JSON.parse(/^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$/m.exec(final)![1]!) as string[]
    // Asynchronous: the relay answering the probe runs in this process.
    const run = (port: string) =>
      new Promise<number | null>((resolve, reject) => {
        const child = spawn(process.execPath, probe.slice(1), { env: { PATH: process.env.PATH, PORT: port }, timeout: 10_000, stdio: 'ignore' })
        child.once('error', reject)
        child.once('exit', (code) => resolve(code))
      })

    it('probes /healthz with Node, and its exit code says whether the relay answers', async () => {
      expect(probe[0]).toBe('node')
      expect(probe.join(' ')).toContain('/healthz')
      expect(await run(new URL(relay.url).port)).toBe(0)
    })

    it('fails when nothing answers', async () => {
      const port = new URL(relay.url).port
      await relay.close()
      expect(await run(port)).toBe(1)
    })
  })

  it('.dockerignore keeps local state and secrets out of the build context, but not the sources', () => {
    const ignored = new Set(read('.dockerignore').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#')))
    for (const path of ['node_modules', 'data', '.git', '.env', 'relay.key', 'mcp-servers.json']) expect(ignored, path).toContain(path)
    for (const path of ['src', 'package.json', 'package-lock.json', '.npmrc', 'tsconfig.json']) expect(ignored, path).not.toContain(path)
  })
})

describe('compose.yaml', () => {
  const compose = parse(read('compose.yaml')) as {
    services: Record<string, { environment?: Record<string, string>; depends_on?: Record<string, { condition: string }>; stop_grace_period?: string; volumes?: string[]; healthcheck?: unknown; ports?: string[] }>
  }
  const relay = compose.services.relay!

  it('runs the relay on Redis, with the encryption key and API keys from the environment', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['redis', 'relay'])
    const env = relay.environment!
    for (const name of Object.keys(env)) expect(ENV_NAMES, name).toContain(name)
    expect(env.STORE_URL).toBe('redis://redis:6379')
    // ${NAME:?…}: compose refuses to start without them rather than run with an empty key.
    expect(env.RELAY_ENCRYPTION_KEY).toMatch(/^\$\{RELAY_ENCRYPTION_KEY:\?/)
    expect(env.RELAY_API_KEYS).toMatch(/^\$\{RELAY_API_KEYS:\?/)
    expect(relay.depends_on?.redis?.condition).toBe('service_healthy')
    expect(compose.services.redis!.healthcheck).toBeDefined()
    expect(relay.ports).toEqual(['8787:8787'])
  })

  it('mounts the servers file where MCP_SERVERS_FILE points', () => {
    const mounts = relay.volumes!.map((volume) => volume.split(':'))
    expect(mounts).toContainEqual(['./mcp-servers.json', relay.environment!.MCP_SERVERS_FILE, 'ro'])
  })

  it('gives the relay longer than its shutdown bound to stop', () => {
    expect(durationSeconds(relay.stop_grace_period!)).toBeGreaterThan(SHUTDOWN_GRACE_SECONDS)
  })

  it('deploy/compose.dify.yaml puts the relay on Dify\'s network as mcp-auth-relay, the URL /openapi.json gives Dify', () => {
    const dify = parse(read('deploy/compose.dify.yaml')) as {
      services: { relay: { environment: Record<string, string>; networks: Record<string, { aliases?: string[] }> } }
      networks: Record<string, { external?: boolean; name?: string }>
    }
    expect(dify.services.relay.networks.dify?.aliases).toEqual(['mcp-auth-relay'])
    expect(dify.services.relay.environment.TOOLS_BASE_URL).toBe('${TOOLS_BASE_URL:-http://mcp-auth-relay:8787}')
    expect(dify.services.relay.networks).toHaveProperty('default')
    expect(dify.networks.dify).toMatchObject({ external: true, name: '${DIFY_NETWORK:-docker_default}' })
  })
})

describe('deploy/kubernetes', () => {
  type Manifest = { kind: string; metadata: { name: string; labels?: Record<string, string> }; [key: string]: any }
  const directory = 'deploy/kubernetes'
  const kustomization = parse(read(`${directory}/kustomization.yaml`)) as { resources: string[] }
  const manifests: Manifest[] = kustomization.resources.flatMap((file) =>
    parseAllDocuments(read(`${directory}/${file}`)).map((document) => document.toJS() as Manifest),
  )
  const byKind = (kind: string) => {
    const found = manifests.filter((manifest) => manifest.kind === kind)
    expect(found, kind).toHaveLength(1)
    return found[0]!
  }
  const deployment = byKind('Deployment')
  const pod = deployment.spec.template.spec
  const container = pod.containers[0]
  const env = new Map<string, any>(container.env.map((entry: { name: string }) => [entry.name, entry]))
  const secret = parse(read(`${directory}/secret.example.yaml`)) as Manifest & { stringData: Record<string, string> }

  it('lists files that exist', () => {
    for (const file of kustomization.resources) expect(existsSync(resolve(ROOT, directory, file)), file).toBe(true)
  })

  it('runs two replicas, never fewer during a rollout or a drain', () => {
    expect(deployment.spec.replicas).toBe(2)
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0)
    expect(byKind('PodDisruptionBudget').spec).toMatchObject({ minAvailable: 1, selector: deployment.spec.selector })
  })

  it('probes readiness at /readyz and liveness at /healthz on the port the relay listens on', () => {
    const port = container.ports.find((candidate: { name: string }) => candidate.name === 'http')
    expect(port.containerPort).toBe(Number(env.get('PORT').value))
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' })
    expect(env.get('HOST').value).toBe('0.0.0.0')
  })

  it('takes the API keys, the encryption key and the store URL from the Secret', () => {
    for (const name of ['RELAY_API_KEYS', 'RELAY_ENCRYPTION_KEY', 'STORE_URL']) {
      const reference = env.get(name)?.valueFrom?.secretKeyRef
      expect(reference, name).toEqual({ name: secret.metadata.name, key: name })
      expect(secret.stringData, name).toHaveProperty(name)
      expect(env.get(name).value, name).toBeUndefined()
    }
    expect(secret.stringData.STORE_URL).toMatch(/^redis:\/\//)
    expect(env.get('RELAY_USER_SECRET').valueFrom.secretKeyRef).toEqual({ name: secret.metadata.name, key: 'RELAY_USER_SECRET', optional: true })
  })

  it('sets only variables the relay reads', () => {
    for (const name of env.keys()) expect(ENV_NAMES, name).toContain(name)
  })

  it('mounts the ConfigMap\'s servers file where MCP_SERVERS_FILE points, and the relay accepts it', () => {
    const configMap = byKind('ConfigMap')
    const volume = pod.volumes.find((candidate: { configMap?: { name: string } }) => candidate.configMap?.name === configMap.metadata.name)
    const mount = container.volumeMounts.find((candidate: { name: string }) => candidate.name === volume.name)
    const [key] = Object.keys(configMap.data)
    expect(`${mount.mountPath}/${key}`).toBe(env.get('MCP_SERVERS_FILE').value)
    const config = loadConfig({ MCP_SERVERS_JSON: configMap.data[key!], RELAY_API_KEYS: 'a-key-of-sixteen-chars', STORE_URL: 'memory://' })
    expect(config.servers.size).toBeGreaterThan(0)
  })

  it('gives a terminating pod longer than the preStop pause plus the shutdown bound', () => {
    const pause = Number(/setTimeout\(\(\) => \{\}, (\d+)\)/.exec(container.lifecycle.preStop.exec.command.join(' '))![1]) / 1000
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(pause + SHUTDOWN_GRACE_SECONDS)
  })

  it('runs as a non-root user with a read-only root filesystem', () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 })
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true })
  })

  it('has a Service that selects the pods and targets the named port', () => {
    const service = byKind('Service')
    for (const [label, value] of Object.entries(service.spec.selector)) expect(deployment.spec.template.metadata.labels[label]).toBe(value)
    expect(service.spec.ports).toEqual([{ name: 'http', port: 8787, targetPort: 'http' }])
    expect(deployment.spec.template.metadata.annotations['prometheus.io/path']).toBe('/metrics')
  })
})
