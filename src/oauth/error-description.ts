import * as oidc from 'openid-client'

/** Bound on the words of a server quoted in a message (DESIGN.md §4: one clear sentence). */
const MAX_WORDS = 200

/**
 * The `error_description` an OAuth server gave with its error (RFC 6749 §5.2), fit to quote in a
 * server's error: printable characters only, cut short, and never a secret the request carried
 * (`secrets`: a subject token or assertion that a careless server echoes back).
 */
export function serverWords(error: unknown, secrets: readonly string[] = []): string | undefined {
  const description = error instanceof oidc.ResponseBodyError ? error.error_description : undefined
  if (typeof description !== 'string' || description.trim() === '') return undefined
  let words = description
  for (const secret of secrets) if (secret) words = words.replaceAll(secret, '[redacted]')
  words = words.replace(/[^\x20-\x7e]/g, ' ').replace(/\s+/g, ' ').trim()
  return words.length > MAX_WORDS ? `${words.slice(0, MAX_WORDS)}…` : words
}

/** `text` as a sentence: a full stop at its end unless it has one (a server's words often do). */
export function asSentence(text: string): string {
  return /[.!?…]$/.test(text) ? text : `${text}.`
}
