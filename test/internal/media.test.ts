/**
 * The one place image and file parts are understood: where their bytes are, what a wire format can
 * carry, and what they cost in prompt tokens (the context pre-check and the limiter read it; base64
 * must never be counted as text).
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { estimatePromptTokens } from "../../src/internal/estimateTokens.js"
import {
  type ContentSupport,
  IMAGE_MAX_TOKENS,
  imageSize,
  mediaOf,
  mediaTokens,
  PDF_PAGE_TOKENS,
  unsupportedContent
} from "../../src/internal/media.js"
import { filePart, type GenerateRequest, textOf } from "../../src/Provider.js"

const b64 = (bytes: ReadonlyArray<number> | Buffer) => Buffer.from(bytes as Array<number>).toString("base64")
const u32be = (n: number) => [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]
const u16le = (n: number) => [n & 255, (n >>> 8) & 255]
const u24le = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255]
const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0))

const png = (w: number, h: number) => b64([0x89, ...ascii("PNG\r\n\x1a\n"), 0, 0, 0, 13, ...ascii("IHDR"), ...u32be(w), ...u32be(h), 8, 6, 0, 0, 0])
const gif = (w: number, h: number) => b64([...ascii("GIF89a"), ...u16le(w), ...u16le(h), 0, 0, 0])
const jpeg = (w: number, h: number) =>
  b64([
    0xff, 0xd8,
    0xff, 0xe0, 0, 16, ...ascii("JFIF\0"), 1, 1, 0, 0, 1, 0, 1, 0, 0, // APP0, 16 bytes with its length
    0xff, 0xc4, 0, 4, 0, 0, // a DHT before the frame header: skipped
    0xff, 0xc0, 0, 17, 8, (h >> 8) & 255, h & 255, (w >> 8) & 255, w & 255, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0
  ])
const webpX = (w: number, h: number) => b64([...ascii("RIFF"), 0, 0, 0, 0, ...ascii("WEBPVP8X"), 10, 0, 0, 0, 0, 0, 0, 0, ...u24le(w - 1), ...u24le(h - 1)])

const request = (content: GenerateRequest["messages"][number]["content"]): GenerateRequest => ({
  model: "m",
  messages: [{ role: "user", content }],
  maxTokens: 1
})

describe("media — where the bytes are", () => {
  it("a data: URL is inline base64 with its media type; a URL stays a URL; image/jpg is image/jpeg", () => {
    const inline = mediaOf(filePart({ mediaType: "", url: "data:image/png;base64,AAAA" }))
    expect(inline).toMatchObject({ mediaType: "image/png", isImage: true, url: undefined, base64: "AAAA" })
    const remote = mediaOf(filePart({ mediaType: "Application/PDF; charset=binary", url: "https://x/y.pdf" }))
    expect(remote).toMatchObject({ mediaType: "application/pdf", isImage: false, url: "https://x/y.pdf", base64: undefined })
    expect(mediaOf(filePart({ mediaType: "image/jpg", data: "AAAA" })).mediaType).toBe("image/jpeg")
  })

  it("filePart base64-encodes bytes and keeps a string as base64", () => {
    expect(filePart({ mediaType: "image/png", data: new Uint8Array([1, 2, 3]) }).source).toEqual({ _tag: "Base64", data: "AQID" })
    expect(filePart({ mediaType: "image/png", data: "AQID" }).source).toEqual({ _tag: "Base64", data: "AQID" })
    expect(filePart({ mediaType: "image/png", url: new URL("https://x/a.png") }).source).toEqual({ _tag: "Url", url: "https://x/a.png" })
  })

  it("textOf joins text parts and skips media", () => {
    expect(textOf("plain")).toBe("plain")
    expect(textOf([{ _tag: "Text", text: "a" }, filePart({ mediaType: "image/png", data: "" }), { _tag: "Text", text: "b" }])).toBe("a\nb")
  })
})

describe("media — what a wire format carries", () => {
  const support: ContentSupport = {
    format: "Wire",
    imageTypes: new Set(["image/png"]),
    fileTypes: new Set(["application/pdf"]),
    imageUrlSchemes: ["https:"],
    fileUrlSchemes: [],
    mediaInToolResults: false
  }
  it("refuses types, URL schemes and roles it does not take, naming the part", () => {
    expect(unsupportedContent(request([filePart({ mediaType: "image/png", url: "https://x" })]), support)).toBeUndefined()
    expect(unsupportedContent(request([filePart({ mediaType: "image/png", url: "data:image/png;base64,AA==" })]), support)).toBeUndefined()
    expect(unsupportedContent(request([{ _tag: "Text", text: "a" }, filePart({ mediaType: "image/gif", data: "" })]), support))
      .toEqual({ param: "messages[0].content[1]", message: "Wire does not accept images of type 'image/gif' (accepted: image/png)" })
    expect(unsupportedContent(request([filePart({ mediaType: "application/pdf", url: "https://x" })]), support)?.message)
      .toMatch(/takes files as bytes, not by URL/)
    expect(unsupportedContent(request([filePart({ mediaType: "image/png", url: "http://x" })]), support)?.message)
      .toMatch(/fetches images only from https: URLs/)
    const toolMedia: GenerateRequest = { model: "m", maxTokens: 1, messages: [{ role: "tool", toolCallId: "c", content: [filePart({ mediaType: "image/png", data: "" })] }] }
    expect(unsupportedContent(toolMedia, support)?.message).toMatch(/in tool messages/)
    expect(unsupportedContent(toolMedia, { ...support, mediaInToolResults: true })).toBeUndefined()
  })
})

describe("media — prompt tokens", () => {
  it("reads the pixel size of PNG, GIF, JPEG and WebP headers", () => {
    expect(imageSize(png(640, 480))).toEqual([640, 480])
    expect(imageSize(gif(300, 200))).toEqual([300, 200])
    expect(imageSize(jpeg(1024, 768))).toEqual([1024, 768])
    expect(imageSize(webpX(4000, 3000))).toEqual([4000, 3000])
    expect(imageSize("not an image")).toBeUndefined()
  })

  it("an image costs ≈ w×h/750, at most the largest per-image charge; a URL or unreadable header costs the most", () => {
    expect(mediaTokens(filePart({ mediaType: "image/png", data: png(750, 100) }))).toBe(100)
    expect(mediaTokens(filePart({ mediaType: "image/webp", data: webpX(4000, 3000) }))).toBe(IMAGE_MAX_TOKENS)
    expect(mediaTokens(filePart({ mediaType: "image/png", url: "https://x/a.png" }))).toBe(IMAGE_MAX_TOKENS)
    expect(mediaTokens(filePart({ mediaType: "image/png", data: "@@@@" }))).toBe(IMAGE_MAX_TOKENS)
  })

  it("a PDF costs per page, a text file its bytes / 4, a document by URL nothing", () => {
    const pages = (n: number) => Buffer.from(`%PDF-1.7\n${"<< /Type /Page /Parent 2 0 R >>\n".repeat(n)}<< /Type /Pages /Count ${n} >>`)
    expect(mediaTokens(filePart({ mediaType: "application/pdf", data: pages(3) }))).toBe(3 * PDF_PAGE_TOKENS)
    expect(mediaTokens(filePart({ mediaType: "text/plain", data: Buffer.from("x".repeat(400)) }))).toBe(100)
    expect(mediaTokens(filePart({ mediaType: "application/pdf", url: "https://x/y.pdf" }))).toBe(0)
  })

  it("base64 is never counted as text: a 1 MB image is one image, not 350k tokens", () => {
    const big = png(512, 512) + "A".repeat(1_400_000)
    const tokens = estimatePromptTokens(request([{ _tag: "Text", text: "describe" }, filePart({ mediaType: "image/png", data: big })]))
    expect(tokens).toBeLessThan(IMAGE_MAX_TOKENS + 20)
    expect(tokens).toBeGreaterThanOrEqual(Math.ceil((512 * 512) / 750))
  })

  it("text parts count exactly as the same text in a string", () =>
    fc.assert(
      fc.property(fc.array(fc.string(), { minLength: 1, maxLength: 5 }), (texts) => {
        const asParts = estimatePromptTokens(request(texts.map((text) => ({ _tag: "Text" as const, text }))))
        const perPart = texts.reduce((n, text) => n + Math.ceil(text.length / 4), 0)
        const asString = estimatePromptTokens(request(""))
        expect(asParts).toBe(asString + perPart)
      })
    ))

  it("never throws on any bytes", () =>
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.constantFrom("image/png", "image/jpeg", "application/pdf", "text/csv", "video/mp4"), (bytes, mediaType) => {
        const tokens = mediaTokens(filePart({ mediaType, data: bytes }))
        expect(Number.isFinite(tokens) && tokens >= 0).toBe(true)
      })
    ))
})
