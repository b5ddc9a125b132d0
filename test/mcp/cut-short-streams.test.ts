import { describe, expect, it } from 'vitest'
import { answerCutShortStreams } from '../../src/mcp/cut-short-streams.ts'

const encoder = new TextEncoder()

/** A fetch whose answer is an event stream of these chunks, then an end or an error. */
function streamingFetch(chunks: string[], end: 'close' | Error = 'close', contentType = 'text/event-stream') {
  return answerCutShortStreams(async () => {
    let index = 0
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (index < chunks.length) controller.enqueue(encoder.encode(chunks[index++]))
        else if (end === 'close') controller.close()
        else controller.error(end)
      },
    })
    return new Response(body, { status: 200, headers: { 'content-type': contentType } })
  })
}

const call = (id: number | string) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'x' } })
const post = (body: string) => ({ method: 'POST', body })

/** The JSON-RPC messages of an event stream's text. */
function messages(text: string): Array<{ id?: unknown; result?: unknown; error?: { message: string } }> {
  return text
    .split(/\n\n/)
    .map((event) => event.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n'))
    .filter((data) => data.startsWith('{') && data.endsWith('}'))
    .map((data) => JSON.parse(data))
}

describe('answerCutShortStreams', () => {
  it('passes an answered stream through unchanged', async () => {
    const chunks = ['event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/progress"}\r', '\n\r\n', `data: {"result":{},"jsonrpc":"2.0","id":7}\n\n`]
    const text = await (await streamingFetch(chunks)(new URL('http://x/mcp'), post(call(7)))).text()
    expect(text).toBe(chunks.join(''))
  })

  it('answers a request whose stream ended first with a JSON-RPC error, after the partial event', async () => {
    const text = await (await streamingFetch(['data: {"jsonrpc":"2.0","id":7,"res'])(new URL('http://x/mcp'), post(call(7)))).text()
    expect(text.startsWith('data: {"jsonrpc":"2.0","id":7,"res\n\n')).toBe(true)
    expect(messages(text)).toEqual([{ jsonrpc: '2.0', id: 7, error: { code: -32000, message: "the MCP server's event stream ended before it answered" } }])
  })

  it('names the error a broken stream ended with, and answers every unanswered request of a batch', async () => {
    const batch = `[${call(1)},${call('1')},${call(2)}]`
    const answered = 'data: {"jsonrpc":"2.0","id":2,"result":{}}\n\n'
    const text = await (await streamingFetch([answered], new Error('too large'))(new URL('http://x/mcp'), post(batch))).text()
    expect(messages(text).map((message) => [message.id, message.error?.message])).toEqual([
      [2, undefined],
      [1, "the MCP server's event stream broke before it answered: too large"],
      ['1', "the MCP server's event stream broke before it answered: too large"],
    ])
  })

  it('leaves a resumable stream (one with an event id) to the SDK, and JSON answers and notifications alone', async () => {
    const resumable = ['id: 42\ndata: \n\n']
    expect(await (await streamingFetch(resumable)(new URL('http://x/mcp'), post(call(1)))).text()).toBe(resumable.join(''))
    const notification = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })
    expect(await (await streamingFetch([])(new URL('http://x/mcp'), post(notification))).text()).toBe('')
    expect(await (await streamingFetch(['{}'], 'close', 'application/json')(new URL('http://x/mcp'), post(call(1)))).text()).toBe('{}')
  })
})
