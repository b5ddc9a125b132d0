// URL elicitation, binary content and tool metadata against a server on another code base than
// the MCP SDK (tmcp: its own JSON-RPC stack and HTTP transport), through the relay's own routes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { binaryBytes } from '../peers/answering-server.ts'
import { startTmcpServer, TMCP_CHART_BYTES, type TmcpServer } from '../peers/tmcp-server.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

const USER = { user_id: 'u-tmcp' }

let peer: TmcpServer
let relay: TestRelay

beforeAll(async () => {
  peer = await startTmcpServer()
  relay = await startRelay({ servers: [{ server_id: 'tmcp', description: 'tmcp peer', mcp_url: peer.url }] })
})

afterAll(async () => {
  await relay?.close()
  await peer?.close()
})

const call = (tool_ref: string, input: object = {}) => relay.post('/tools/call-tool', { ...USER, tool_ref, input })

describe('a tmcp server through the relay', () => {
  it('speaks MCP 2026-07-28 with it (tmcp answers server/discover), and passes its questions to the user', async () => {
    const asked = await call('tmcp::rename', { id: 'doc-7' })
    expect(asked.body).toMatchObject({
      ok: false,
      error_code: 'USER_INPUT_REQUIRED',
      input_requests: [{ key: 'name', kind: 'form', message: 'What should the new name be?', fields: { name: { type: 'string' } }, required: ['name'] }],
    })
    expect(await relay.deps.eras.get(relay.deps.config.servers.get('tmcp')!)).toMatchObject({ era: 'modern' })
    const done = await relay.post('/tools/call-tool', { ...USER, tool_ref: 'tmcp::rename', input: { id: 'doc-7' }, input_ref: asked.body.input_ref, input_response: { name: 'Q3 plan' } })
    expect(done.body).toMatchObject({ ok: true, result: { content: [{ type: 'text', text: 'Renamed doc-7 to Q3 plan.' }] } })
  })

  it('its -32042 becomes USER_ACTION_REQUIRED with the https page and a clean message', async () => {
    const { body } = await call('tmcp::consent', { url: 'https://consent.example.com/export' })
    expect(body).toMatchObject({
      ok: false,
      error_code: 'USER_ACTION_REQUIRED',
      status: 'need_user_action',
      server_id: 'tmcp',
      action_url: 'https://consent.example.com/export',
    })
    expect(body.message).toContain('Approve the export on the consent page.')
    expect(body.message).not.toMatch(/MCP error/)
  })

  it('its -32042 with a javascript: URL is UPSTREAM_ERROR with the server\'s words, no link', async () => {
    const { body } = await call('tmcp::consent', { url: 'javascript:alert(1)' })
    expect(body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(body).not.toHaveProperty('action_url')
    expect(body.message).toContain('This export needs your approval first.')
    expect(body.message).not.toMatch(/MCP error|alert\(/)
  })

  it('its -32042 without elicitations in its data is UPSTREAM_ERROR with the server\'s words, once', async () => {
    const { body } = await call('tmcp::consent')
    expect(body).toMatchObject({ ok: false, error_code: 'UPSTREAM_ERROR' })
    expect(body.message).toBe('tmcp asked the user to open a page (This export needs your approval first.) but gave no usable URL.')
  })

  it('its large image is kept aside behind a /files link that serves the bytes', async () => {
    const { body } = await call('tmcp::chart')
    const [image, hint] = body.result.content
    expect(image).toMatchObject({ type: 'image', mimeType: 'image/png', size_bytes: TMCP_CHART_BYTES, omitted: true })
    expect(hint.text).toContain(`![image](${image.url})`)
    const response = await fetch(image.url)
    expect(response.headers.get('content-type')).toBe('image/png')
    expect(Buffer.from(await response.arrayBuffer()).equals(binaryBytes(TMCP_CHART_BYTES))).toBe(true)
  })

  it('list-tools passes its title, annotations and outputSchema through', async () => {
    const { body } = await relay.post('/tools/list-tools', { ...USER, server_id: 'tmcp' })
    expect(body.errors).toEqual([])
    expect(body.tools.find((tool: { name: string }) => tool.name === 'described')).toMatchObject({
      title: 'Described by tmcp',
      annotations: { readOnlyHint: true, destructiveHint: false, openWorldHint: false },
      outputSchema: { type: 'object', properties: { total: { type: 'number' } } },
    })
  })
})
