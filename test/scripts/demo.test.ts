// `npm run demo` (scripts/demo.ts) as a newcomer follows it: start it, open each login link it
// prints, run each curl command it prints (as the request curl would send), and stop it with
// Ctrl-C. The demo's own words are the test's only input, so a demo that prints a wrong link,
// a command that no longer works or a step that answers something else fails here.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCookieJar, signInThroughBrowser } from '../peers/browser.ts'
import { freePort } from '../support/free-port.ts'

const READY = 'Press Ctrl-C to stop.'

let demo: ChildProcess
let printed = ''

beforeAll(async () => {
  const port = await freePort()
  demo = spawn(process.execPath, ['--experimental-strip-types', '--disable-warning=ExperimentalWarning', 'scripts/demo.ts'], {
    cwd: join(import.meta.dirname, '../..'),
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let errors = ''
  demo.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not get ready in 60 s; it printed:\n${printed}\n${errors}`)), 60_000)
    demo.stdout!.on('data', (chunk: Buffer) => {
      printed += chunk.toString()
      if (printed.includes(READY)) {
        clearTimeout(timer)
        resolve()
      }
    })
    demo.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the demo exited (${code}) before it was ready:\n${printed}\n${errors}`))
    })
  })
}, 90_000)

afterAll(async () => {
  if (demo.exitCode === null && demo.signalCode === null) {
    demo.kill('SIGKILL')
    await once(demo, 'exit')
  }
})

/** The request a printed `curl -s URL -H 'Name: value' … -d 'JSON'` line sends. */
interface Curl {
  url: string
  headers: Record<string, string>
  body: Record<string, unknown>
}

function printedCurls(): Curl[] {
  return printed.split('\n').filter((line) => line.trim().startsWith('curl ')).map((line) => {
    const [, url] = /curl -s (\S+)/.exec(line) ?? []
    const headers = Object.fromEntries([...line.matchAll(/-H '([^:']+): ([^']*)'/g)].map(([, name, value]) => [name!.toLowerCase(), value!]))
    const [, body] = /-d '([^']*)'/.exec(line) ?? []
    if (!url || !body) throw new Error(`a curl line the test cannot read: ${line}`)
    return { url, headers, body: JSON.parse(body) as Record<string, unknown> }
  })
}

async function send(curl: Curl, change: (body: Record<string, unknown>) => Record<string, unknown> = (body) => body) {
  const response = await fetch(curl.url, { method: 'POST', headers: curl.headers, body: JSON.stringify(change(curl.body)), signal: AbortSignal.timeout(20_000) })
  return { status: response.status, body: (await response.json()) as Record<string, any> }
}

describe('npm run demo, followed as printed', () => {
  it('signs in to both servers through its links, lists and calls tools of both eras, answers a question through the chat, signs out, and stops on Ctrl-C', async () => {
    const links = [...printed.matchAll(/^\s+(http:\/\/localhost:\d+\/oauth\/start\/\S+)$/gm)].map(([, link]) => link!)
    expect(links).toHaveLength(2)
    const curls = printedCurls()
    expect(curls.map((curl) => new URL(curl.url).pathname)).toEqual(['/tools/list-tools', '/tools/call-tool', '/tools/call-tool', '/tools/call-tool', '/oauth/reset'])
    const [list, whoami, greet, answer, reset] = curls as [Curl, Curl, Curl, Curl, Curl]

    // 1. Each link in one browser: the confirmation page, Continue, the authorization server.
    const jar = createCookieJar()
    for (const link of links) {
      const page = await signInThroughBrowser(link, 'ada', { jar, timeoutMs: 20_000 })
      expect(page.status).toBe(200)
      expect(page.html).toMatch(/signed in/i)
    }

    // 2. Both servers' tools, and whoami as the account signed in with.
    const listed = await send(list)
    expect(listed.status).toBe(200)
    const refs = (listed.body.tools as Array<{ tool_ref: string }>).map((tool) => tool.tool_ref)
    expect(refs).toEqual(expect.arrayContaining(['demo::whoami', 'demo::echo', 'demo-2026::whoami', 'demo-2026::greet', 'demo-2026::echo']))
    const me = await send(whoami)
    expect(me.body).toMatchObject({ ok: true })
    expect(JSON.stringify(me.body.result)).toContain('ada')

    // 3. The question, then the same call with its input_ref and the answer.
    const asked = await send(greet)
    expect(asked.body).toMatchObject({ ok: false, error_code: 'USER_INPUT_REQUIRED', status: 'need_user_input', server_id: 'demo-2026' })
    expect(asked.body.input_requests).toEqual([expect.objectContaining({ key: 'name', kind: 'form', message: 'What is your name?' })])
    expect(answer.body.input_ref).toBe('<input_ref>')
    const done = await send(answer, (body) => ({ ...body, input_ref: asked.body.input_ref }))
    expect(done.body).toMatchObject({ ok: true, result: { structuredContent: { greeting: 'Hello, Ada!' } } })

    // 4. Signed out of both: the next status offers a link for each again.
    const out = await send(reset)
    expect(out.status).toBe(200)
    expect((out.body.servers as Array<{ server_id: string }>).map((server) => server.server_id).sort()).toEqual(['demo', 'demo-2026'])
    const again = await send(whoami)
    expect(again.body).toMatchObject({ ok: false, error_code: 'NOT_AUTHORIZED', status: 'need_auth' })

    demo.kill('SIGINT')
    const [code] = (await once(demo, 'exit')) as [number | null]
    expect(code).toBe(0)
  }, 120_000)
})
