// The Dify Code node snippet that signs user ids (examples/dify-sign-user-id.py, shown in the
// README) must produce exactly what src/http/identity.ts verifies. It is checked twice: the same
// algorithm step by step in JavaScript against signUserId, and the Python file itself, run by
// python3, against the verifier and the relay's routes.
import { execFile } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createIdentity, signUserId } from '../../src/http/identity.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const ROOT = resolve(import.meta.dirname, '../..')
const SNIPPET_PATH = resolve(ROOT, 'examples/dify-sign-user-id.py')
const SNIPPET = readFileSync(SNIPPET_PATH, 'utf8')
const SECRET = 'a-dify-user-secret-of-at-least-32-chars'
const NOW_SECONDS = 1_800_000_000
/** The snippet's lifetime: it signs for this long. */
const TTL_SECONDS = Number(/int\(time\.time\(\)\) \+ (\d+)/.exec(SNIPPET)![1])
const IDS = ['user-1', 'a1b2c3d4-e5f6-4a5b-8c7d-0e1f2a3b4c5d', 'name.with.dots', 'ünïcödé 用户', '']

/** The snippet's steps, one for one, in JavaScript. */
function signLikeTheSnippet(userId: string, secret: string, nowSeconds: number): string {
  const expiry = Math.floor(nowSeconds) + TTL_SECONDS
  const payload = `${userId}.${expiry}`
  const signature = createHmac('sha256', Buffer.from(secret, 'utf8')).update(Buffer.from(payload, 'utf8')).digest('base64url')
  return `${payload}.${signature}`
}

/** Runs the snippet's main() with python3, its clock set to `nowSeconds`. */
async function signWithPython(userId: string, secret: string, nowSeconds: number): Promise<string> {
  const harness = [
    'import json, runpy, sys, time',
    `time.time = lambda: ${nowSeconds}`,
    'snippet = runpy.run_path(sys.argv[1])',
    'args = json.loads(sys.stdin.readline())',
    'print(json.dumps(snippet["main"](**args)))',
  ].join('\n')
  const child = promisify(execFile)('python3', ['-c', harness, SNIPPET_PATH], { timeout: 10_000 })
  child.child.stdin!.end(`${JSON.stringify({ user_id: userId, secret })}\n`)
  const { stdout } = await child
  const output = JSON.parse(stdout) as Record<string, unknown>
  expect(Object.keys(output)).toEqual(['signed_user_id'])
  return output.signed_user_id as string
}

describe('the Dify Code node snippet for RELAY_USER_SECRET', () => {
  it('is the one the README shows', () => {
    const readme = readFileSync(resolve(ROOT, 'README.md'), 'utf8')
    expect(readme).toContain(`\`\`\`python\n${SNIPPET}\`\`\``)
  })

  it('follows the same steps as signUserId (JavaScript)', () => {
    for (const id of IDS) {
      const signed = signLikeTheSnippet(id, SECRET, NOW_SECONDS)
      expect(signed).toBe(signUserId(SECRET, id, TTL_SECONDS, NOW_SECONDS * 1000))
      expect(signed).toMatch(/^.*\.\d{1,12}\.[A-Za-z0-9_-]{43}$/)
    }
  })

  it('run by python3, produces what signUserId produces and the verifier accepts until it expires', async () => {
    for (const id of IDS.filter(Boolean)) {
      const signed = await signWithPython(id, SECRET, NOW_SECONDS)
      expect(signed, id).toBe(signUserId(SECRET, id, TTL_SECONDS, NOW_SECONDS * 1000))
      const at = (seconds: number) => createIdentity({ apiKeys: [], userSecret: SECRET, now: () => seconds * 1000 })
      expect(at(NOW_SECONDS).userIdOf(signed), id).toBe(id)
      expect(() => at(NOW_SECONDS + TTL_SECONDS).userIdOf(signed), id).toThrow(/expired/)
      expect(() => createIdentity({ apiKeys: [], userSecret: `${SECRET}-other`, now: () => NOW_SECONDS * 1000 }).userIdOf(signed)).toThrow(
        /signature/,
      )
    }
  })

  describe('against the relay', () => {
    let relay: TestRelay
    beforeAll(async () => {
      relay = await startRelay({ servers: [], env: { RELAY_USER_SECRET: SECRET } })
    })
    afterAll(async () => {
      await relay?.close()
    })

    it('a user id signed by the snippet now is accepted; a forged or bare one is refused', async () => {
      const signed = await signWithPython('dify-end-user-7', SECRET, Math.floor(Date.now() / 1000))
      expect((await relay.post('/tools/auth-status', { user_id: signed })).status).toBe(200)
      const [id, expiry] = signed.split('.')
      expect((await relay.post('/tools/auth-status', { user_id: `other-user.${expiry}.${signed.split('.')[2]}` })).status).toBe(401)
      expect((await relay.post('/tools/auth-status', { user_id: id })).status).toBe(401)
    })
  })
})
