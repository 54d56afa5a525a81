/**
 * Image and file content parts, as the chaos server understands them in every wire format: the
 * shared pieces (base64 sizes without decoding, `data:` URLs, media types, the token cost of media)
 * and the readers of the OpenAI Chat, OpenAI Responses and Anthropic Messages parts. The Gemini and
 * Bedrock readers live next to their request parsers (geminiWire.ts, bedrockWire.ts).
 *
 * Shapes follow the official SDKs' request types:
 * - OpenAI Chat (`openai/resources/chat/completions/completions.d.ts`): `ChatCompletionContentPartImage`
 *   `{type:"image_url", image_url:{url, detail?}}` and `ChatCompletionContentPart.File`
 *   `{type:"file", file:{file_data?, file_id?, filename?}}`.
 * - OpenAI Responses (`openai/resources/responses/responses.d.ts`): `ResponseInputImage`
 *   `{type:"input_image", image_url?, file_id?, detail}` and `ResponseInputFile`
 *   `{type:"input_file", file_data?, file_url?, file_id?, filename?}` (also inside a
 *   `function_call_output`'s `output`, as `ResponseInputImageContent` / `ResponseInputFileContent`).
 * - Anthropic (`@anthropic-ai/sdk/resources/messages/messages.d.ts`): `ImageBlockParam`
 *   `{type:"image", source: Base64ImageSource | URLImageSource | FileImageSource}`, `DocumentBlockParam`
 *   `{type:"document", source: Base64PDFSource | PlainTextSource | ContentBlockSource | URLPDFSource |
 *   FileDocumentSource, title?}`, and both inside `ToolResultBlockParam.content`.
 *
 * Every reader is total: a malformed part is a `RequestProblem` worded as the provider words it
 * (where its wording is known), never an exception.
 *
 * @internal
 */
import type { MediaSeen } from "../ChaosServer.js"
import type { RequestProblem } from "./request.js"
import { isRecord } from "../../internal/json.js"

/** Reads one content part: pushes the media it understood onto `into`, or returns the problem. */
export type PartReader = (part: Readonly<Record<string, unknown>>, index: number, into: Array<MediaSeen>) => RequestProblem | undefined

/** Runs `read` over the object parts of `parts` (anything else is no media); the first problem stops it. */
export const collectMedia = (parts: unknown, read: PartReader, into: Array<MediaSeen>): RequestProblem | undefined => {
  if (!Array.isArray(parts)) return undefined
  for (let i = 0; i < parts.length; i++) {
    const part: unknown = parts[i]
    if (!isRecord(part)) continue
    const problem = read(part, i, into)
    if (problem !== undefined) return problem
  }
  return undefined
}

/** Pushes what a single-part reader saw, or hands back its problem. */
export const seen = (into: Array<MediaSeen>, read: MediaSeen | RequestProblem): RequestProblem | undefined => {
  if ("message" in read) return read
  into.push(read)
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Base64, data URLs, media types
// ---------------------------------------------------------------------------------------------------

const STANDARD_ALPHABET = /^[A-Za-z0-9+/]*={0,2}$/
/** Google's JSON mapping of `bytes` accepts the URL-safe alphabet too. */
const EITHER_ALPHABET = /^[A-Za-z0-9+/_-]*={0,2}$/
/** Strings up to this length are checked whole; longer ones by their first and last `SAMPLE` characters. */
const FULL_CHECK = 1 << 20
const SAMPLE = 4096

/**
 * The decoded size of base64 `data`, from its length and padding (nothing is decoded), or undefined
 * when it is not base64: a character outside the alphabet (checked whole up to 1 MiB, sampled at both
 * ends beyond), misplaced padding, or a length no encoding produces. Standard base64 must be padded;
 * `lenient` (Google) also takes URL-safe characters and missing padding.
 */
export const base64Bytes = (data: string, lenient = false): number | undefined => {
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0
  const length = data.length - padding
  if (length % 4 === 1) return undefined
  if ((!lenient || padding > 0) && data.length % 4 !== 0) return undefined
  const checked = data.length <= FULL_CHECK ? data : `${data.slice(0, SAMPLE)}${data.slice(-SAMPLE)}`
  return (lenient ? EITHER_ALPHABET : STANDARD_ALPHABET).test(checked) ? Math.floor((length * 3) / 4) : undefined
}

/** A `data:` URL: its media type (lowercase, null when absent), whether it says `;base64`, its payload. */
export interface DataUrl {
  readonly mediaType: string | null
  readonly base64: boolean
  readonly data: string
}

/** Splits a `data:` URL (undefined for any other string; a URL without a comma has no payload). */
export const parseDataUrl = (url: string): DataUrl | undefined => {
  if (url.slice(0, 5).toLowerCase() !== "data:") return undefined
  const comma = url.indexOf(",")
  const header = url.slice(5, comma < 0 ? url.length : comma)
  const params = header.split(";")
  const mediaType = (params[0] ?? "").trim().toLowerCase()
  return {
    mediaType: mediaType === "" ? null : mediaType,
    base64: comma >= 0 && params.slice(1).some((p) => p.trim().toLowerCase() === "base64"),
    data: comma < 0 ? "" : url.slice(comma + 1)
  }
}

const BY_EXTENSION: Readonly<Record<string, string>> = {
  pdf: "application/pdf",
  txt: "text/plain",
  md: "text/markdown",
  csv: "text/csv",
  html: "text/html",
  htm: "text/html",
  json: "application/json",
  xml: "application/xml",
  doc: "application/msword",
  docx: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  xls: "application/vnd.ms-excel",
  xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp"
}

/** The media type of a file extension (`pdf`, `docx`, Bedrock's document formats), or null. */
export const mediaTypeOfExtension = (extension: string): string | null => BY_EXTENSION[extension.toLowerCase()] ?? null

/** The media type a file name's extension implies, or null (no name, no known extension). */
export const mediaTypeOfName = (name: unknown): string | null => {
  if (typeof name !== "string") return null
  const dot = name.lastIndexOf(".")
  return dot < 0 ? null : mediaTypeOfExtension(name.slice(dot + 1))
}

/** The UTF-8 size of `text` (inline text documents), counted without encoding. */
export const utf8Length = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) bytes += 1
    else if (c < 0x800) bytes += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

/** An inline text document (Anthropic `text`/`content` sources, Bedrock `text`/`content` sources). */
export const textDocument = (text: string, mediaType: string | null = "text/plain"): MediaSeen => ({
  kind: "file",
  mediaType,
  source: "text",
  bytes: utf8Length(text)
})

// ---------------------------------------------------------------------------------------------------
// Token cost
// ---------------------------------------------------------------------------------------------------

/**
 * Tokens one image adds to the prompt estimate, whatever its size or source: an upper bound (Anthropic
 * bills about width × height / 750, capped near 1,600 for the largest image it keeps unscaled; an
 * OpenAI high-detail 2048×2048 image is 1,105).
 */
export const IMAGE_TOKENS = 1_600
/** A file whose bytes the server never sees (a URL, a file id, an S3 object): one PDF page's worth. */
export const UNSEEN_FILE_TOKENS = 2_000
/** The most one binary file (PDF, office document, unknown type) adds: pages are not parsed. */
export const BINARY_FILE_TOKENS_CAP = 100_000

const isTextLike = (mediaType: string | null): boolean =>
  mediaType !== null && (mediaType.startsWith("text/") || mediaType === "application/json" || mediaType === "application/xml")

/**
 * The prompt tokens media add, on top of the text estimate (characters / 4): `IMAGE_TOKENS` per image;
 * a text-like file (text/*, JSON, XML) its bytes / 4, like text; any other file with known bytes its
 * bytes / 4 capped at `BINARY_FILE_TOKENS_CAP` (a PDF's true cost, ~1.5–3k tokens a page, needs its
 * pages); a file of unknown size `UNSEEN_FILE_TOKENS`. Zero for a request without media.
 */
export const mediaTokens = (media: ReadonlyArray<MediaSeen>): number => {
  let tokens = 0
  for (const item of media) {
    if (item.kind === "image") tokens += IMAGE_TOKENS
    else if (item.bytes === null) tokens += UNSEEN_FILE_TOKENS
    else if (isTextLike(item.mediaType)) tokens += Math.ceil(item.bytes / 4)
    else tokens += Math.min(Math.ceil(item.bytes / 4), BINARY_FILE_TOKENS_CAP)
  }
  return tokens
}

// ---------------------------------------------------------------------------------------------------
// OpenAI Chat Completions and Responses
// ---------------------------------------------------------------------------------------------------

const missingParameter = (param: string): RequestProblem => ({
  message: `Missing required parameter: '${param}'.`,
  param,
  code: "missing_required_parameter"
})

const invalidValue = (message: string, param: string): RequestProblem => ({ message, param, code: "invalid_value" })

const EXPECTED_IMAGE_DATA_URL =
  "Expected a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=')"

/** An image URL: http(s), or a base64 `data:` URL of an image. `invalid` words the problem for its API. */
const openAiImage = (url: string, invalid: (got: string) => RequestProblem): MediaSeen | RequestProblem => {
  if (/^https?:\/\//i.test(url)) return { kind: "image", mediaType: null, source: "url", bytes: null }
  const dataUrl = parseDataUrl(url)
  if (dataUrl === undefined) return invalid("a value without the 'data:' prefix")
  if (dataUrl.mediaType === null || !dataUrl.mediaType.startsWith("image/")) {
    return invalid(`unsupported MIME type '${dataUrl.mediaType ?? ""}'`)
  }
  if (dataUrl.data === "") return invalid("empty base64-encoded bytes")
  const bytes = dataUrl.base64 ? base64Bytes(dataUrl.data) : undefined
  if (bytes === undefined) return invalid("invalid base64-encoded bytes")
  return { kind: "image", mediaType: dataUrl.mediaType, source: "base64", bytes }
}

/** `file_data`: a base64 `data:` URL (its type) or bare base64 (the type the file name implies). */
const openAiFileData = (data: string, filename: unknown, param: string): MediaSeen | RequestProblem => {
  const dataUrl = parseDataUrl(data)
  const payload = dataUrl?.data ?? data
  const invalid = (got: string) =>
    invalidValue(`Invalid '${param}'. Expected base64-encoded file data or a base64-encoded data URL (e.g. 'data:application/pdf;base64,...'), but got ${got}.`, param)
  if (payload === "") return invalid("empty base64-encoded bytes")
  const bytes = dataUrl === undefined || dataUrl.base64 ? base64Bytes(payload) : undefined
  if (bytes === undefined) return invalid("invalid base64-encoded bytes")
  return { kind: "file", mediaType: dataUrl?.mediaType ?? mediaTypeOfName(filename), source: "base64", bytes }
}

const nonEmptyString = (u: unknown): u is string => typeof u === "string" && u !== ""

/** A Chat message's parts (`messages[i].content`); images only in user messages, as the API requires. */
export const chatPartReader = (message: number, role: unknown): PartReader => (part, j, into) => {
  const at = `messages[${message}].content[${j}]`
  if (part["type"] === "image_url") {
    const image = part["image_url"]
    const url = isRecord(image) ? image["url"] : undefined
    if (!nonEmptyString(url)) return missingParameter(`${at}.image_url.url`)
    if (role !== "user") {
      return invalidValue(
        `Invalid 'messages[${message}]'. Image URLs are only allowed for messages with role 'user', but this message with role '${String(role)}' contains an image URL.`,
        `messages[${message}]`
      )
    }
    const param = `${at}.image_url.url`
    return seen(into, openAiImage(url, (got) => invalidValue(`Invalid image URL: '${param}'. ${EXPECTED_IMAGE_DATA_URL}, but got ${got}.`, param)))
  }
  if (part["type"] === "file") {
    const file = part["file"]
    if (!isRecord(file)) return missingParameter(`${at}.file`)
    if (typeof file["file_data"] === "string") return seen(into, openAiFileData(file["file_data"], file["filename"], `${at}.file.file_data`))
    if (nonEmptyString(file["file_id"])) {
      return seen(into, { kind: "file", mediaType: mediaTypeOfName(file["filename"]), source: "file_id", bytes: null })
    }
    return invalidValue(`Invalid '${at}.file'. Expected one of 'file_data' or 'file_id'.`, `${at}.file`)
  }
  return undefined
}

/** A Responses item's parts (`input[i].content` or a tool output's `input[i].output`). */
export const responsesPartReader = (path: string): PartReader => (part, j, into) => {
  const at = `${path}[${j}]`
  if (part["type"] === "input_image") {
    const url = part["image_url"]
    if (nonEmptyString(url)) {
      const param = `${at}.image_url`
      return seen(into, openAiImage(url, (got) => invalidValue(`Invalid '${param}'. ${EXPECTED_IMAGE_DATA_URL}, but got ${got}.`, param)))
    }
    if (nonEmptyString(part["file_id"])) return seen(into, { kind: "image", mediaType: null, source: "file_id", bytes: null })
    return invalidValue(`Invalid '${at}'. Expected one of 'image_url' or 'file_id'.`, at)
  }
  if (part["type"] === "input_file") {
    const name = part["filename"]
    if (typeof part["file_data"] === "string") return seen(into, openAiFileData(part["file_data"], name, `${at}.file_data`))
    if (nonEmptyString(part["file_url"])) {
      return seen(into, { kind: "file", mediaType: mediaTypeOfName(name) ?? mediaTypeOfName(part["file_url"]), source: "url", bytes: null })
    }
    if (nonEmptyString(part["file_id"])) return seen(into, { kind: "file", mediaType: mediaTypeOfName(name), source: "file_id", bytes: null })
    return invalidValue(`Invalid '${at}'. Expected one of 'file_data', 'file_url' or 'file_id'.`, at)
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Anthropic Messages
// ---------------------------------------------------------------------------------------------------

const ANTHROPIC_IMAGE_TYPES: ReadonlySet<string> = new Set(["image/jpeg", "image/png", "image/gif", "image/webp"])

/** A problem in Anthropic's validation wording (`<path>: <what>`); Anthropic names no `param`. */
const anthropicProblem = (path: string, what: string): RequestProblem => ({ message: `${path}: ${what}`, param: null })

const unknownTag = (path: string, tag: unknown, expected: string): RequestProblem =>
  tag === undefined
    ? anthropicProblem(path, "Unable to extract tag using discriminator 'type'")
    : anthropicProblem(path, `Input tag '${String(tag)}' found using 'type' does not match any of the expected tags: ${expected}`)

/** A base64 source's `data` (present, a string, not empty, base64), or the problem. */
const anthropicBase64 = (source: Readonly<Record<string, unknown>>, path: string, empty: string): number | RequestProblem => {
  const data = source["data"]
  if (data === undefined) return anthropicProblem(`${path}.data`, "Field required")
  if (typeof data !== "string") return anthropicProblem(`${path}.data`, "Input should be a valid string")
  if (data === "") return anthropicProblem(path, empty)
  return base64Bytes(data) ?? anthropicProblem(path, "invalid base64 data")
}

/** `image.source`: base64 (jpeg/png/gif/webp only), url, or an uploaded file. */
const anthropicImage = (source: unknown, at: string): MediaSeen | RequestProblem => {
  const path = `${at}.image.source`
  if (!isRecord(source)) return anthropicProblem(path, "Field required")
  switch (source["type"]) {
    case "base64": {
      const mediaType = source["media_type"]
      if (mediaType === undefined) return anthropicProblem(`${path}.base64.media_type`, "Field required")
      if (typeof mediaType !== "string" || !ANTHROPIC_IMAGE_TYPES.has(mediaType)) {
        return anthropicProblem(`${path}.base64.media_type`, "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
      }
      const bytes = anthropicBase64(source, `${path}.base64`, "image cannot be empty")
      return typeof bytes === "number" ? { kind: "image", mediaType, source: "base64", bytes } : bytes
    }
    case "url":
      return nonEmptyString(source["url"])
        ? { kind: "image", mediaType: null, source: "url", bytes: null }
        : anthropicProblem(`${path}.url.url`, "Field required")
    case "file":
      return nonEmptyString(source["file_id"])
        ? { kind: "image", mediaType: null, source: "file_id", bytes: null }
        : anthropicProblem(`${path}.file.file_id`, "Field required")
    default:
      return unknownTag(path, source["type"], "'base64', 'url', 'file'")
  }
}

/** A `content` document source: its text blocks as one text document, its images as images. */
const anthropicContentSource = (content: unknown, path: string, into: Array<MediaSeen>): RequestProblem | undefined => {
  if (typeof content === "string") return seen(into, textDocument(content))
  if (!Array.isArray(content)) return anthropicProblem(`${path}.content`, "Field required")
  const texts: Array<string> = []
  const images: Array<MediaSeen> = []
  const problem = collectMedia(content, (block, k, found) => {
    if (block["type"] === "text" && typeof block["text"] === "string") texts.push(block["text"])
    return block["type"] === "image" ? seen(found, anthropicImage(block["source"], `${path}.content.${k}`)) : undefined
  }, images)
  if (problem !== undefined) return problem
  if (texts.length > 0) into.push(textDocument(texts.join("\n")))
  into.push(...images)
  return undefined
}

/** `document.source`: a base64 PDF, plain text, content blocks, a PDF URL, or an uploaded file. */
const anthropicDocument = (source: unknown, at: string, into: Array<MediaSeen>): RequestProblem | undefined => {
  const path = `${at}.document.source`
  if (!isRecord(source)) return anthropicProblem(path, "Field required")
  switch (source["type"]) {
    case "base64": {
      const mediaType = source["media_type"]
      if (mediaType === undefined) return anthropicProblem(`${path}.base64.media_type`, "Field required")
      if (mediaType !== "application/pdf") return anthropicProblem(`${path}.base64.media_type`, "Input should be 'application/pdf'")
      const bytes = anthropicBase64(source, `${path}.base64`, "document cannot be empty")
      return typeof bytes === "number" ? seen(into, { kind: "file", mediaType, source: "base64", bytes }) : bytes
    }
    case "text": {
      if (source["media_type"] !== "text/plain") return anthropicProblem(`${path}.text.media_type`, "Input should be 'text/plain'")
      const data = source["data"]
      return typeof data === "string" ? seen(into, textDocument(data)) : anthropicProblem(`${path}.text.data`, "Field required")
    }
    case "content":
      return anthropicContentSource(source["content"], `${path}.content`, into)
    case "url":
      return nonEmptyString(source["url"])
        ? seen(into, { kind: "file", mediaType: "application/pdf", source: "url", bytes: null })
        : anthropicProblem(`${path}.url.url`, "Field required")
    case "file":
      return nonEmptyString(source["file_id"])
        ? seen(into, { kind: "file", mediaType: null, source: "file_id", bytes: null })
        : anthropicProblem(`${path}.file.file_id`, "Field required")
    default:
      return unknownTag(path, source["type"], "'base64', 'text', 'content', 'url', 'file'")
  }
}

/** Image and document blocks at `path` (`messages.i.content.j`, or inside a tool result). */
const anthropicBlockReader = (path: string): PartReader => (block, j, into) => {
  const at = `${path}.${j}`
  switch (block["type"]) {
    case "image":
      return seen(into, anthropicImage(block["source"], at))
    case "document":
      return anthropicDocument(block["source"], at, into)
    case "tool_result":
      return collectMedia(block["content"], anthropicBlockReader(`${at}.tool_result.content`), into)
    default:
      return undefined
  }
}

/** A Messages message's blocks (`messages[i].content`), tool results' images and documents included. */
export const anthropicPartReader = (message: number): PartReader => anthropicBlockReader(`messages.${message}.content`)
