import type { FastifyReply } from 'fastify'

/**
 * The pages a browser sees during sign-in. They show only what we choose to show (never a token,
 * code or state), escaped, with no script, and are never cached, framed or redirected from.
 */
export const PAGE_HEADERS = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
})

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => ESCAPES[character]!)
}

export interface Page {
  readonly tone: 'success' | 'failure'
  readonly title: string
  /** Plain text; escaped here. */
  readonly paragraphs: readonly string[]
}

const STYLE = `
  :root { color-scheme: light dark; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
    font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #f4f5f7; color: #1f2328; }
  main { box-sizing: border-box; width: calc(100% - 3rem); max-width: 30rem; margin: 1.5rem; padding: 2rem 2.25rem; background: #fff; border-radius: 12px;
    box-shadow: 0 1px 3px rgba(0,0,0,.08), 0 8px 24px rgba(0,0,0,.06); border-top: 4px solid var(--accent); }
  .success { --accent: #1a7f37; } .failure { --accent: #cf222e; }
  .mark { width: 2.5rem; height: 2.5rem; border-radius: 50%; display: flex; align-items: center; justify-content: center;
    background: var(--accent); color: #fff; font-size: 1.4rem; font-weight: 700; }
  h1 { font-size: 1.3rem; margin: 1rem 0 .5rem; }
  p { margin: .5rem 0 0; color: #424a53; overflow-wrap: anywhere; }
  footer { margin-top: 1.5rem; font-size: .8rem; color: #6e7781; }
  @media (prefers-color-scheme: dark) {
    body { background: #0d1117; color: #e6edf3; } main { background: #161b22; box-shadow: none; }
    p { color: #9da7b3; } footer { color: #7d8590; }
  }`

export function renderPage(page: Page): string {
  const mark = page.tone === 'success' ? '&#10003;' : '!'
  const paragraphs = page.paragraphs.map((text) => `<p>${escapeHtml(text)}</p>`).join('\n    ')
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
  return reply.code(status).headers(PAGE_HEADERS).send(renderPage(page))
}
