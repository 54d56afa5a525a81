/**
 * Image and file parts, once for every wire format: where a part's bytes are (`mediaOf`), whether a
 * format can carry it (`unsupportedContent`, checked by the adapter skeleton before anything is sent,
 * against the format's declared {@link ContentSupport}), and what it costs in prompt tokens
 * (`mediaTokens`, for the context pre-check and the rate limiter).
 *
 * @internal
 */
import * as Encoding from "effect/Encoding"
import * as Either from "effect/Either"
import type { FilePart, GenerateRequest } from "../Provider.js"

/** A file part with its bytes located: a `data:` URL is inline base64, like a `Base64` source. */
export interface Media {
  readonly part: FilePart
  /** Lower-case, without parameters: `image/png`. */
  readonly mediaType: string
  readonly isImage: boolean
  /** The URL the provider fetches (never a `data:` URL). */
  readonly url: string | undefined
  /** The inline bytes, base64 without a prefix. */
  readonly base64: string | undefined
}

const DATA_URL = /^data:([^;,]*)(?:;[^,]*)?;base64,/i

/** Lower-case without parameters; `image/jpg` (not a registered type, and refused by Gemini) is `image/jpeg`. */
const normalType = (mediaType: string): string => {
  const type = (mediaType.split(";")[0] ?? "").trim().toLowerCase()
  return type === "image/jpg" ? "image/jpeg" : type
}

export const mediaOf = (part: FilePart): Media => {
  const base = (mediaType: string, url: string | undefined, base64: string | undefined): Media => {
    const type = normalType(mediaType)
    return { part, mediaType: type, isImage: type.startsWith("image/"), url, base64 }
  }
  if (part.source._tag === "Base64") return base(part.mediaType, undefined, part.source.data)
  const match = DATA_URL.exec(part.source.url)
  if (match === null) return base(part.mediaType, part.source.url, undefined)
  return base(part.mediaType || (match[1] ?? ""), undefined, part.source.url.slice(match[0].length))
}

/** `data:{type};base64,{bytes}` — how OpenAI's formats take inline bytes. */
export const dataUrlOf = (media: Media): string => `data:${media.mediaType};base64,${media.base64 ?? ""}`

// ---------------------------------------------------------------------------------------------------
// What a wire format can carry
// ---------------------------------------------------------------------------------------------------

/**
 * What a wire format can carry, declared once per format from its documentation (cited in
 * docs/providers.md). Everything not declared is refused before sending with `UnsupportedRequest`.
 */
export interface ContentSupport {
  /** The format's name, for messages: `OpenAI Chat Completions`. */
  readonly format: string
  /** Image media types it accepts. */
  readonly imageTypes: ReadonlySet<string>
  /** Other media types it accepts as files or documents; `any` when the provider decides. */
  readonly fileTypes: ReadonlySet<string> | "any"
  /** URL schemes it fetches from, for images and for files (`[]`: bytes only). */
  readonly imageUrlSchemes: ReadonlyArray<string>
  readonly fileUrlSchemes: ReadonlyArray<string>
  /** The file types it fetches by URL, when fewer than it takes inline (Anthropic: PDFs only). */
  readonly fileUrlTypes?: ReadonlySet<string> | undefined
  /** Whether a tool result may carry images and files (else tool results are text). */
  readonly mediaInToolResults: boolean
}

/** Why a part cannot be carried, and where it is. */
export interface Unsupported {
  readonly param: string
  readonly message: string
}

const schemeOf = (url: string): string => {
  const colon = url.indexOf(":")
  return colon < 0 ? "" : url.slice(0, colon + 1).toLowerCase()
}

const partProblem = (media: Media, support: ContentSupport): string | undefined => {
  const what = media.isImage ? "image" : "file"
  const accepted = media.isImage ? support.imageTypes : support.fileTypes
  if (accepted !== "any" && !accepted.has(media.mediaType)) {
    const list = [...accepted].join(", ")
    return `${support.format} does not accept ${what}s of type '${media.mediaType}'${list.length > 0 ? ` (accepted: ${list})` : ""}`
  }
  if (media.url === undefined) return undefined
  if (!media.isImage && support.fileUrlTypes !== undefined && !support.fileUrlTypes.has(media.mediaType)) {
    return `${support.format} fetches only ${[...support.fileUrlTypes].join(", ")} files by URL: pass the '${media.mediaType}' data inline`
  }
  const schemes = media.isImage ? support.imageUrlSchemes : support.fileUrlSchemes
  if (schemes.includes(schemeOf(media.url))) return undefined
  return schemes.length === 0
    ? `${support.format} takes ${what}s as bytes, not by URL: pass the data (base64 or a Uint8Array)`
    : `${support.format} fetches ${what}s only from ${schemes.join(" / ")} URLs`
}

/**
 * The first part of the request the format cannot carry, if any. System and assistant messages are
 * text in every format; tool results carry media only where the format says so.
 */
export const unsupportedContent = (request: GenerateRequest, support: ContentSupport): Unsupported | undefined => {
  for (let m = 0; m < request.messages.length; m++) {
    const message = request.messages[m]!
    if (typeof message.content === "string") continue
    for (let p = 0; p < message.content.length; p++) {
      const part = message.content[p]!
      if (part._tag !== "File") continue
      const param = `messages[${m}].content[${p}]`
      const carried = message.role === "user" || (message.role === "tool" && support.mediaInToolResults)
      if (!carried) {
        return { param, message: `${support.format} does not accept images or files in ${message.role} messages` }
      }
      const problem = partProblem(mediaOf(part), support)
      if (problem !== undefined) return { param, message: problem }
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// What a part costs in prompt tokens
// ---------------------------------------------------------------------------------------------------

/**
 * An image's tokens when its size is unknown (a URL, an unreadable header): the most any supported
 * provider charges for one image after its own downscaling (Anthropic: ≈ 1,600 for ~1.15 megapixels).
 */
export const IMAGE_MAX_TOKENS = 1600
/** Anthropic's rule: ≈ width × height / 750 tokens, capped by the downscaling above. */
const PIXELS_PER_TOKEN = 750
/** Tokens per PDF page: Anthropic documents 1,500–3,000 (text plus the page as an image). */
export const PDF_PAGE_TOKENS = 2000
/** When a PDF's pages cannot be counted (compressed object streams): ~100 KB per page. */
const PDF_BYTES_PER_PAGE = 100_000

const decodedLength = (base64: string): number => {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0
  return Math.max(0, Math.floor((base64.length * 3) / 4) - padding)
}

/** The first bytes of base64 data (at most `bytes`), or empty when the prefix does not decode. */
const headBytes = (base64: string, bytes: number): Uint8Array => {
  const chars = Math.min(base64.length - (base64.length % 4), Math.ceil(bytes / 3) * 4)
  const decoded = Encoding.decodeBase64(base64.slice(0, chars))
  return Either.isRight(decoded) ? decoded.right : new Uint8Array(0)
}

const u16be = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!
const u16le = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8)
const u24le = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16)
const u32be = (b: Uint8Array, i: number) => ((b[i]! << 24) >>> 0) + ((b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!)
const ascii = (b: Uint8Array, i: number, n: number) => String.fromCharCode(...b.subarray(i, i + n))

type Size = readonly [width: number, height: number]

const jpegSize = (b: Uint8Array): Size | undefined => {
  let i = 2
  while (i + 9 < b.length) {
    if (b[i] !== 0xff) return undefined
    const marker = b[i + 1]!
    // SOF0–SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return [u16be(b, i + 7), u16be(b, i + 5)]
    }
    i += 2 + u16be(b, i + 2)
  }
  return undefined
}

const webpSize = (b: Uint8Array): Size | undefined => {
  const chunk = ascii(b, 12, 4)
  if (chunk === "VP8 " && b.length >= 30) return [u16le(b, 26) & 0x3fff, u16le(b, 28) & 0x3fff]
  if (chunk === "VP8L" && b.length >= 25) {
    const bits = (b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24)) >>> 0
    return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1]
  }
  if (chunk === "VP8X" && b.length >= 30) return [u24le(b, 24) + 1, u24le(b, 27) + 1]
  return undefined
}

/** Width and height from a PNG, GIF, WebP or JPEG header. */
export const imageSize = (base64: string): Size | undefined => {
  const b = headBytes(base64, 64 * 1024)
  if (b.length >= 24 && b[0] === 0x89 && ascii(b, 1, 3) === "PNG") return [u32be(b, 16), u32be(b, 20)]
  if (b.length >= 10 && ascii(b, 0, 4) === "GIF8") return [u16le(b, 6), u16le(b, 8)]
  if (b.length >= 16 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") return webpSize(b)
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) return jpegSize(b)
  return undefined
}

/** Past this size a PDF's pages are not counted (decoding it would cost the request path ~10 ms per MB). */
const PDF_SCAN_BYTES = 4 * 1024 * 1024

const pdfPages = (base64: string): number => {
  const bytes = decodedLength(base64)
  const bySize = Math.max(1, Math.ceil(bytes / PDF_BYTES_PER_PAGE))
  if (bytes > PDF_SCAN_BYTES) return bySize
  const decoded = Encoding.decodeBase64(base64)
  if (Either.isLeft(decoded)) return 1
  const text = new TextDecoder("latin1").decode(decoded.right)
  const pages = text.match(/\/Type\s*\/Page(?![a-zA-Z])/g)?.length ?? 0
  return pages > 0 ? pages : bySize
}

const TEXT_LIKE = /^(text\/|application\/(json|xml|csv|x-yaml|yaml|markdown))/

const computeTokens = (media: Media): number => {
  if (media.isImage) {
    const size = media.base64 !== undefined ? imageSize(media.base64) : undefined
    return size === undefined ? IMAGE_MAX_TOKENS : Math.min(IMAGE_MAX_TOKENS, Math.max(1, Math.ceil((size[0] * size[1]) / PIXELS_PER_TOKEN)))
  }
  // A document by URL cannot be sized without fetching it: it counts nothing beyond its framing.
  if (media.base64 === undefined) return 0
  if (media.mediaType === "application/pdf") return pdfPages(media.base64) * PDF_PAGE_TOKENS
  if (TEXT_LIKE.test(media.mediaType)) return Math.ceil(decodedLength(media.base64) / 4)
  // Audio, video and other binaries: their cost is per second or per provider; not estimated.
  return 0
}

// Parts are usually the same objects across the retries and routes of one call: size each once.
const tokenCache = new WeakMap<FilePart, number>()

/** The estimated prompt tokens of one image or file part. */
export const mediaTokens = (part: FilePart): number => {
  const cached = tokenCache.get(part)
  if (cached !== undefined) return cached
  const tokens = computeTokens(mediaOf(part))
  tokenCache.set(part, tokens)
  return tokens
}
