// Lone UTF-16 surrogates make encodeURIComponent throw (and would turn into U+FFFD, colliding,
// once a backend stores the key as UTF-8), so they get their own escape, `%uXXXX`.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g
const ANY_SURROGATE = /[\uD800-\uDFFF]/

function encodePart(part: string): string {
  // Most keys hold no surrogate at all: one test instead of the lookbehind scan (a third of a store read's cost).
  if (!ANY_SURROGATE.test(part)) return encodeURIComponent(part)
  let encoded = ''
  let last = 0
  for (const match of part.matchAll(LONE_SURROGATE)) {
    encoded += encodeURIComponent(part.slice(last, match.index))
    encoded += `%u${match[0].charCodeAt(0).toString(16).toUpperCase()}`
    last = match.index + 1
  }
  return encoded + encodeURIComponent(part.slice(last))
}

/**
 * A composite store key: each part percent-encoded, then joined with ':'. Encoded parts never
 * contain ':' (so `('a:b', 'c')` and `('a', 'b:c')` differ) nor '/' (so no key can start with a
 * Keyv namespace such as `relay/tokens:`, which Keyv would then not prefix — see open-store.ts).
 * Control characters become %XX, so PostgreSQL (which refuses NUL in text) can store every key.
 */
export function storeKey(...parts: string[]): string {
  return parts.map(encodePart).join(':')
}

/** The parts of a storeKey(); undefined for a string no storeKey() call makes. */
export function parseStoreKey(key: string): string[] | undefined {
  try {
    // %uXXXX first (a lone surrogate, see above), then runs of %XX together (one UTF-8 sequence).
    return key.split(':').map((part) =>
      part.replace(/%u([0-9A-F]{4})|(?:%[0-9A-Fa-f]{2})+/g, (match, surrogate: string | undefined) =>
        surrogate ? String.fromCharCode(parseInt(surrogate, 16)) : decodeURIComponent(match),
      ),
    )
  } catch {
    return undefined
  }
}
