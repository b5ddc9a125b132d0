import type { Keyv } from 'keyv'

type Deserialize = NonNullable<Keyv['deserialize']>

/** Stored texts remembered per namespace, and their total length, before the memo starts afresh. */
const MAX_ENTRIES = 1000
const MAX_CHARACTERS = 8 * 1024 * 1024

/**
 * Keyv's deserializer, remembering what each stored text parsed to: a warm `list-tools` reads
 * the same tool list on every request, and Keyv's JSON reviver cost more than the store read
 * (docs/benchmarks.md). The memo is keyed by the stored text itself, so a value another replica
 * changed, dropped or let expire is never served from it: the store is still read every time,
 * only the parse of an unchanged text is skipped. Parsed values are shared between callers, so
 * they are frozen; only for namespaces whose readers never change what they read.
 */
export function memoizeDeserialize(deserialize: Deserialize): Deserialize {
  let parsed = new Map<string, ReturnType<Deserialize>>()
  let characters = 0
  return (<Value>(text: string) => {
    const known = parsed.get(text)
    if (known !== undefined) return known
    const value = deserialize<Value>(text)
    // Keyv's own deserializer is synchronous; anything else is passed through unremembered.
    if (value === undefined || value instanceof Promise) return value
    if (text.length > MAX_CHARACTERS) return value
    if (parsed.size >= MAX_ENTRIES || characters + text.length > MAX_CHARACTERS) {
      parsed = new Map()
      characters = 0
    }
    deepFreeze(value)
    parsed.set(text, value)
    characters += text.length
    return value
  }) as Deserialize
}

function deepFreeze(value: unknown): void {
  // A typed array with elements cannot be frozen (and Keyv's Buffers are not in these namespaces).
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value)) return
  Object.freeze(value)
  for (const child of Object.values(value)) deepFreeze(child)
}
