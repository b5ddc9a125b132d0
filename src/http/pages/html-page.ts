import type { FastifyReply } from 'fastify'

/**
 * The pages a browser sees during sign-in. They show only what we choose to show (never a token,
 * OAuth code or state), escaped, with no script, and are never cached, framed or redirected from.
 */
export const PAGE_HEADERS = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  // For browsers that predate CSP frame-ancestors (RFC 7034).
  'x-frame-options': 'DENY',
})

/**
 * The confirmation page's headers: as above, but without `form-action`. Its form posts to the
 * relay, which answers a 302 to the authorization server, and Chromium applies form-action to
 * that redirect as well (FIELD-NOTES.md, 2026-11-27): 'self' would block the sign-in.
 */
export const CONFIRMATION_PAGE_HEADERS = Object.freeze({
  ...PAGE_HEADERS,
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
})

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => ESCAPES[character]!)
}

export interface Page {
  readonly tone: 'success' | 'failure' | 'question'
  readonly title: string
  /** Plain text; escaped here. */
  readonly paragraphs: readonly string[]
  /** Label and value rows shown after the paragraphs (the confirmation page: server, workspace, user). */
  readonly facts?: ReadonlyArray<readonly [string, string]>
  /** A one-time code to read out, shown large in `#confirmation-code`. */
  readonly code?: string
  /** Plain text shown after the facts or code. */
  readonly notes?: readonly string[]
  /**
   * One form that POSTs to the page's own URL (no `action`: the browser's URL is the public one,
   * whatever prefix a proxy strips), carrying the CSRF token.
   */
  readonly form?: { readonly csrfToken: string; readonly button: string }
}

const STYLE = `
  :root { color-scheme: light dark; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
    font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #f4f5f7; color: #1f2328; }
  main { box-sizing: border-box; width: calc(100% - 3rem); max-width: 30rem; margin: 1.5rem; padding: 2rem 2.25rem; background: #fff; border-radius: 12px;
    box-shadow: 0 1px 3px rgba(0,0,0,.08), 0 8px 24px rgba(0,0,0,.06); border-top: 4px solid var(--accent); }
  .success { --accent: #1a7f37; } .failure { --accent: #cf222e; } .question { --accent: #0969da; }
  .mark { width: 2.5rem; height: 2.5rem; border-radius: 50%; display: flex; align-items: center; justify-content: center;
    background: var(--accent); color: #fff; font-size: 1.4rem; font-weight: 700; }
  h1 { font-size: 1.3rem; margin: 1rem 0 .5rem; }
  p { margin: .5rem 0 0; color: #424a53; overflow-wrap: anywhere; }
  footer { margin-top: 1.5rem; font-size: .8rem; color: #6e7781; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 1rem 0 0; padding: .75rem 1rem;
    background: #f6f8fa; border-radius: 8px; }
  dt { color: #6e7781; } dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
  .code { margin: 1rem 0 0; padding: .75rem 1rem; background: #f6f8fa; border-radius: 8px; text-align: center;
    font: 700 1.8rem/1.2 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; letter-spacing: .12em; color: #1f2328; }
  form { margin-top: 1.5rem; }
  button { font: inherit; font-weight: 600; color: #fff; background: var(--accent); border: 0; border-radius: 6px;
    padding: .6rem 1.2rem; cursor: pointer; }
  button:focus-visible { outline: 3px solid #54aeff; outline-offset: 2px; }
  @media (prefers-color-scheme: dark) {
    body { background: #0d1117; color: #e6edf3; } main { background: #161b22; box-shadow: none; }
    p { color: #9da7b3; } footer { color: #7d8590; }
    dl, .code { background: #0d1117; } .code { color: #e6edf3; }
  }`

const MARKS: Record<Page['tone'], string> = { success: '&#10003;', failure: '!', question: '?' }

export function renderPage(page: Page): string {
  const mark = MARKS[page.tone]
  const text = (lines: readonly string[] | undefined) => (lines ?? []).map((line) => `<p>${escapeHtml(line)}</p>`)
  const parts = text(page.paragraphs)
  if (page.facts) {
    const rows = page.facts.map(([label, value]) => `<dt>${escapeHtml(label)}</dt><dd>${escapeHtml(value)}</dd>`).join('')
    parts.push(`<dl>${rows}</dl>`)
  }
  if (page.code !== undefined) parts.push(`<p class="code" id="confirmation-code">${escapeHtml(page.code)}</p>`)
  parts.push(...text(page.notes))
  if (page.form) {
    parts.push(
      `<form method="post"><input type="hidden" name="csrf" value="${escapeHtml(page.form.csrfToken)}"><button type="submit" id="continue">${escapeHtml(page.form.button)}</button></form>`,
    )
  }
  const paragraphs = parts.join('\n    ')
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>${escapeHtml(page.title)} · MCP Auth Relay</title>
  <style>${STYLE}</style>
</head>
<body>
  <main class="${page.tone}">
    <div class="mark" aria-hidden="true">${mark}</div>
    <h1>${escapeHtml(page.title)}</h1>
    ${paragraphs}
    <footer>MCP Auth Relay</footer>
  </main>
</body>
</html>
`
}

export function sendPage(reply: FastifyReply, status: number, page: Page): FastifyReply {
  return reply.code(status).headers(page.form ? CONFIRMATION_PAGE_HEADERS : PAGE_HEADERS).send(renderPage(page))
}
