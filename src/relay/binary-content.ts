import { MAX_RESPONSE_BYTES } from '../mcp/upstream-fetch.ts'
import type { FileStore } from '../store/files.ts'

/**
 * At most this much is kept aside per item. An upstream response is itself bounded
 * (mcp/upstream-fetch.ts), and base64 makes the decoded bytes of all its items together smaller
 * still, so a response can never keep more than that bound aside.
 */
const MAX_KEPT_BYTES = MAX_RESPONSE_BYTES

interface Item {
  type?: unknown
  data?: unknown
  mimeType?: unknown
  resource?: { blob?: unknown; mimeType?: unknown; uri?: unknown; [key: string]: unknown }
  [key: string]: unknown
}

/**
 * DESIGN.md §4, binary content: an image, audio or embedded-resource `blob` item whose decoded
 * size is over `inlineBytes` is kept aside in the store and replaced by the same item without
 * its bytes but with `size_bytes`, `omitted: true` and a `url` to `GET /files/<id>`, followed by
 * a text item telling the model how to show that link. Anything else passes through untouched:
 * a 200 KB base64 chart would otherwise fill the model's context with noise. When the tenant's
 * kept files already fill FILES_MAX_MB_PER_TENANT (DESIGN.md §3), the item is omitted without a
 * link and the text says why.
 */
export async function keepBinaryAside(
  content: unknown[],
  deps: { files: FileStore; tenant: string; inlineBytes: number; publicBaseUrl: string },
): Promise<unknown[]> {
  if (!content.some((item) => binaryOf(item as Item) !== undefined)) return content
  const answer: unknown[] = []
  for (const item of content as Item[]) {
    const binary = binaryOf(item)
    // Buffer.byteLength of base64 text is the decoded size, without decoding it.
    const size = binary && Buffer.byteLength(binary.data, 'base64')
    if (!binary || size === undefined || size <= deps.inlineBytes) {
      answer.push(item)
      continue
    }
    const kind = item.type === 'resource' ? 'file' : String(item.type)
    const stripped = withoutBytes(item)
    if (size > MAX_KEPT_BYTES) {
      answer.push({ ...stripped, size_bytes: size, omitted: true })
      answer.push({ type: 'text', text: `The ${kind} (${describeSize(size)}) is too large for the relay to pass on.` })
      continue
    }
    const id = await deps.files.keep(deps.tenant, { mimeType: binary.mimeType, data: binary.data, bytes: size })
    if (id === undefined) {
      answer.push({ ...stripped, size_bytes: size, omitted: true })
      answer.push({ type: 'text', text: budgetSpent(kind, binary.mimeType, size) })
      continue
    }
    const url = `${deps.publicBaseUrl}/files/${id}`
    answer.push({ ...stripped, size_bytes: size, omitted: true, url })
    answer.push({ type: 'text', text: linkHint(kind, binary.mimeType, size, url) })
  }
  return answer
}

function binaryOf(item: Item): { data: string; mimeType: string } | undefined {
  if (typeof item !== 'object' || item === null) return undefined
  if ((item.type === 'image' || item.type === 'audio') && typeof item.data === 'string') {
    return { data: item.data, mimeType: typeof item.mimeType === 'string' ? item.mimeType : '' }
  }
  if (item.type === 'resource' && typeof item.resource?.blob === 'string') {
    return { data: item.resource.blob, mimeType: typeof item.resource.mimeType === 'string' ? item.resource.mimeType : '' }
  }
  return undefined
}

function withoutBytes(item: Item): Item {
  if (item.type === 'resource') {
    const { blob: _blob, ...resource } = item.resource!
    return { ...item, resource }
  }
  const { data: _data, ...rest } = item
  return rest
}

function linkHint(kind: string, mimeType: string, size: number, url: string): string {
  const what = `The ${kind} (${mimeType || 'binary'}, ${describeSize(size)}) is not included here.`
  const how =
    kind === 'image'
      ? `To show it to the user, put it in your answer as a Markdown image: ![image](${url})`
      : `To give it to the user, put it in your answer as a Markdown link: [${kind}](${url})`
  return `${what} ${how} (the link works for 10 minutes).`
}

function budgetSpent(kind: string, mimeType: string, size: number): string {
  return (
    `The ${kind} (${mimeType || 'binary'}, ${describeSize(size)}) is not included here: the relay's space for files kept ` +
    'for this workspace is used up for now. It frees as earlier files expire, within 10 minutes; tell the user, or call the tool again later.'
  )
}

function describeSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`
}
