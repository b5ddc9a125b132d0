// The same behaviours as server-answers.test.ts, against a server someone else wrote: the MCP
// project's reference server (@modelcontextprotocol/server-everything, pinned), run from npm as
// a child process in its Streamable HTTP mode. Through the relay's own HTTP routes only.
import { randomBytes } from 'node:crypto'
import { gunzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEverythingServer, type EverythingServer } from '../peers/everything-server.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const USER = { user_id: 'u-everything' }

let everything: EverythingServer
let relay: TestRelay

beforeAll(async () => {
  everything = await startEverythingServer()
  relay = await startRelay({
    servers: [
      { server_id: 'everything', mcp_url: everything.url },
      { server_id: 'hasty', mcp_url: everything.url, timeout_seconds: 1 },
    ],
    // Its tiny image is about 4 KB, under the default 8192: a lower bound keeps it aside.
    env: { TOOL_RESULT_INLINE_BYTES: '1024' },
  })
}, 30_000)

afterAll(async () => {
  await relay?.close()
  await everything?.close()
})

const call = (tool_ref: string, input: object = {}) => relay.post('/tools/call-tool', { ...USER, tool_ref, input })

type Listed = { name: string; title?: string; annotations?: unknown; outputSchema?: unknown }

describe('@modelcontextprotocol/server-everything through the relay', () => {
  it('lists tools with their title, annotations and outputSchema', async () => {
    const { body } = await relay.post('/tools/list-tools', { ...USER, server_id: 'everything' })
    expect(body.errors).toEqual([])
    const structured = body.tools.find((tool: Listed) => tool.name === 'get-structured-content')
    expect(structured).toMatchObject({
      tool_ref: 'everything::get-structured-content',
      title: 'Get Structured Content Tool',
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      outputSchema: { type: 'object' },
    })
  })

  it('offers the relay none of the tools it keeps for clients that sample or elicit: the relay declares neither', async () => {
    const { body } = await relay.post('/tools/list-tools', { ...USER, server_id: 'everything' })
    const names = body.tools.map((tool: Listed) => tool.name)
    expect(names).toContain('echo')
    for (const name of ['trigger-sampling-request', 'trigger-elicitation-request', 'trigger-url-elicitation']) expect(names).not.toContain(name)
  })

  it('keeps its image aside behind a /files link that serves the PNG', async () => {
    const { body } = await call('everything::get-tiny-image')
    expect(body.ok).toBe(true)
    const index = body.result.content.findIndex((item: { type: string }) => item.type === 'image')
    const image = body.result.content[index]
    expect(image).toMatchObject({ type: 'image', mimeType: 'image/png', omitted: true })
    expect(image).not.toHaveProperty('data')
    expect(body.result.content[index + 1].text).toContain(`![image](${image.url})`)
    const response = await fetch(image.url)
    expect(response.headers.get('content-type')).toBe('image/png')
    expect(response.headers.get('content-disposition')).toBe('inline')
    const bytes = Buffer.from(await response.arrayBuffer())
    expect(bytes.length).toBe(image.size_bytes)
    expect(bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true)
  })

  it('keeps an embedded blob resource (its gzip tool) aside as a download of the same bytes', async () => {
    const original = randomBytes(20_000)
    const { body } = await call('everything::gzip-file-as-resource', {
      name: 'random.bin.gz',
      data: `data:application/octet-stream;base64,${original.toString('base64')}`,
      outputType: 'resource',
    })
    expect(body.ok).toBe(true)
    const item = body.result.content.find((entry: { type: string }) => entry.type === 'resource')
    expect(item).toMatchObject({ resource: { mimeType: 'application/gzip' }, omitted: true })
    expect(item.resource).not.toHaveProperty('blob')
    const response = await fetch(item.url)
    expect(response.headers.get('content-disposition')).toBe('attachment')
    expect(gunzipSync(Buffer.from(await response.arrayBuffer())).equals(original)).toBe(true)
  })

  it('calls its task-only research tool as a task and returns the finished report', async () => {
    const { body } = await call('everything::simulate-research-query', { topic: 'relays' })
    expect(body.ok).toBe(true)
    expect(body.result.isError).toBe(false)
    expect(JSON.stringify(body.result.content)).toContain('relays')
  }, 30_000)

  it('answers TIMEOUT for the same task past a one-second bound, and cancels it', async () => {
    const { body } = await call('hasty::simulate-research-query', { topic: 'relays' })
    expect(body).toMatchObject({ ok: false, error_code: 'TIMEOUT' })
    expect(body.message).toContain('the task was cancelled')
  })
})
