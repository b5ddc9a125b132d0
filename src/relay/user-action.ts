import { z } from 'zod'
import type { UrlGuard } from '../oauth/url-guard.ts'

/** What the server sent as the error's data; only what the relay uses is read, leniently. */
const errorData = z.object({ elicitations: z.array(z.object({ mode: z.string().optional(), url: z.unknown(), message: z.unknown() }).loose()) })

export type UserAction = { kind: 'open'; actionUrl: string; message: string } | { kind: 'refused'; message: string }

/**
 * MCP 2025-11-25 "Elicitation", URL mode, `URLElicitationRequiredError` (-32042): the first
 * URL-mode elicitation names the page the user must open before the call can succeed. The
 * relay passes that URL to the model to show as a link, so only a page fit for a browser is
 * passed on: https, or plain http on a host the operator trusts (OAUTH_TRUSTED_HOSTS, an
 * mcp_url's host). Never `javascript:`, `data:` and the like, nor a URL with a user name
 * (`https://bank.example@evil.example/` reads as the bank's). `error` is any ProtocolError with that
 * code: the SDK makes it an UrlElicitationRequiredError only when its data has `elicitations`.
 */
export function userActionOf(error: { readonly message: string; readonly data?: unknown }, guard: UrlGuard): UserAction {
  const parsed = errorData.safeParse(error.data)
  const first = parsed.success ? parsed.data.elicitations.find((elicitation) => elicitation.mode === 'url') : undefined
  const serverWords = cleanMcpMessage(error.message)
  if (!first || typeof first.url !== 'string' || !URL.canParse(first.url)) {
    return { kind: 'refused', message: `asked the user to open a page (${serverWords}) but gave no usable URL` }
  }
  const url = new URL(first.url)
  const browsable = url.protocol === 'https:' || (url.protocol === 'http:' && guard.isTrusted(url))
  if (!browsable || url.username !== '' || url.password !== '') {
    const why = url.protocol === 'http:' ? 'plain http on a host that is not trusted' : url.protocol === 'https:' ? 'with credentials in it' : `a ${url.protocol} URL`
    return { kind: 'refused', message: `asked the user to open a page (${serverWords}), but its URL is ${why}, which the relay does not pass on` }
  }
  const said = typeof first.message === 'string' && first.message.trim() !== '' ? first.message.trim() : serverWords
  // The relay's own sentence follows it.
  return { kind: 'open', actionUrl: url.href, message: /[.!?]$/.test(said) ? said : `${said}.` }
}

/**
 * The SDK prefixes an McpError's message with "MCP error <code>: ", and a server built on it
 * sends that prefixed message on the wire, which the relay's SDK prefixes again: what the
 * server actually said is what remains after every such prefix.
 */
export function cleanMcpMessage(message: string): string {
  return message.replace(/^(?:MCP error -?\d+: )+/, '')
}
