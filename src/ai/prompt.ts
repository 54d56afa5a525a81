/**
 * Conversations and tools between the two vocabularies: @effect/ai's `Prompt` (typed parts: text,
 * files, tool calls, tool results) and `Tool` (an Effect Schema per tool), and this library's
 * `GenerateRequest` (text messages, tool calls as JSON text, tools as JSON Schema).
 *
 * Both directions are lossless for what both sides can say (text, images and files in user messages,
 * tool calls and their results, system messages, tool choice). What only @effect/ai can say — files
 * in assistant messages, provider-defined tools such as OpenAI's web search — is refused with a
 * reason rather than dropped silently.
 *
 * @internal
 */
import * as Prompt from "@effect/ai/Prompt"
import * as Tool from "@effect/ai/Tool"
import type * as Toolkit from "@effect/ai/Toolkit"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Encoding from "effect/Encoding"
import * as Schema from "effect/Schema"
import { opt } from "../internal/json.js"
import { mediaOf } from "../internal/media.js"
import {
  type ContentPart,
  type FilePart,
  filePart,
  type GenerateRequest,
  type Message,
  textOf as messageText,
  type ToolCall,
  type ToolDefinition
} from "../Provider.js"

// ---------------------------------------------------------------------------------------------------
// @effect/ai → this library (the chain as a LanguageModel)
// ---------------------------------------------------------------------------------------------------

/** A tool result as message text: strings as they are, anything else as JSON. */
const resultText = (result: unknown): string => typeof result === "string" ? result : JSON.stringify(result) ?? "null"

/** Tool-call parameters as the JSON text our `ToolCall.arguments` carries. */
const argumentsText = (params: unknown): string => JSON.stringify(params ?? {}) ?? "{}"

const textOf = (parts: ReadonlyArray<{ readonly type: string }>): string =>
  parts.flatMap((part) => (part.type === "text" && "text" in part && typeof part.text === "string" ? [part.text] : [])).join("")

const assistantMessage = (message: Prompt.AssistantMessage): Either.Either<Message, string> => {
  const toolCalls: Array<ToolCall> = []
  for (const part of message.content) {
    if (part.type === "file") return Either.left("file parts in assistant messages are not supported by the chain")
    // A provider-executed call (OpenAI web search) was answered by the provider itself: there is
    // nothing for another route to continue, so only the caller's own tool calls are carried.
    if (part.type === "tool-call" && !part.providerExecuted) {
      toolCalls.push({ id: part.id, name: part.name, arguments: argumentsText(part.params) })
    }
  }
  return Either.right({ role: "assistant", content: textOf(message.content), ...(toolCalls.length > 0 ? { toolCalls } : {}) })
}

/** @effect/ai-openai's `imageDetail` option of a file part, the one detail hint @effect/ai carries. */
const imageDetailOf = (options: Prompt.FilePart["options"]): "auto" | "low" | "high" | undefined => {
  const detail = (options as { readonly openai?: { readonly imageDetail?: unknown } }).openai?.imageDetail
  return detail === "auto" || detail === "low" || detail === "high" ? detail : undefined
}

/** An @effect/ai file part as ours: a URL (or a `data:` URL) stays a URL, bytes become base64. */
const filePartFrom = (part: Prompt.FilePart): FilePart => {
  const detail = imageDetailOf(part.options)
  const common = {
    mediaType: part.mediaType,
    filename: part.fileName,
    detail
  }
  const data = part.data
  if (data instanceof URL) return filePart({ ...common, url: data })
  if (typeof data === "string") return data.startsWith("data:") ? filePart({ ...common, url: data }) : filePart({ ...common, data })
  return filePart({ ...common, data })
}

/** A user message's content: plain text when it is only text (as before parts existed), else parts. */
const userContentFrom = (parts: ReadonlyArray<Prompt.UserMessagePart>): Message["content"] => {
  if (!parts.some((part) => part.type === "file")) return textOf(parts)
  return parts.map((part): ContentPart => part.type === "file" ? filePartFrom(part) : { _tag: "Text", text: part.text })
}

/**
 * The chain's messages for an @effect/ai prompt, or why they cannot be built. System messages stay
 * in place (adapters lift them where the wire has a system slot); a tool message becomes one `tool`
 * message per result, as every wire format wants.
 */
export const messagesFromPrompt = (prompt: Prompt.Prompt): Either.Either<ReadonlyArray<Message>, string> => {
  const messages: Array<Message> = []
  for (const message of prompt.content) {
    switch (message.role) {
      case "system":
        messages.push({ role: "system", content: message.content })
        break
      case "user":
        messages.push({ role: "user", content: userContentFrom(message.content) })
        break
      case "assistant": {
        const converted = assistantMessage(message)
        if (Either.isLeft(converted)) return Either.left(converted.left)
        messages.push(converted.right)
        break
      }
      case "tool":
        for (const part of message.content) {
          messages.push({ role: "tool", content: resultText(part.result), toolCallId: part.id, name: part.name })
        }
        break
    }
  }
  return Either.right(messages)
}

/**
 * The chain's tool definitions for the tools an @effect/ai toolkit offers. Provider-defined tools
 * (run by one vendor's servers) cannot be offered to every route of a chain, so they are refused.
 */
export const toolDefinitionsFrom = (tools: ReadonlyArray<Tool.Any>): Either.Either<ReadonlyArray<ToolDefinition>, string> => {
  const definitions: Array<ToolDefinition> = []
  for (const tool of tools) {
    if (Tool.isProviderDefined(tool)) {
      return Either.left(`the provider-defined tool '${tool.name}' runs on one vendor's servers and cannot be offered to every route of the chain`)
    }
    const parameters: Record<string, unknown> = { ...Tool.getJsonSchemaFromSchemaAst(tool.parametersSchema.ast) }
    const description = tool.description ?? Tool.getDescriptionFromSchemaAst(tool.parametersSchema.ast)
    definitions.push({ name: tool.name, parameters, ...opt("description", description) })
  }
  return Either.right(definitions)
}

/**
 * @effect/ai's tool choice in the chain's terms. `oneOf` needs no translation of its own: @effect/ai
 * has already narrowed the offered tools to that subset, so only its mode is left to say.
 */
export const toolChoiceFrom = (choice: unknown): GenerateRequest["toolChoice"] => {
  if (choice === "auto" || choice === "none" || choice === "required") return choice
  if (typeof choice === "object" && choice !== null) {
    if ("tool" in choice && typeof choice.tool === "string") return { name: choice.tool }
    if ("mode" in choice && choice.mode === "required") return "required"
  }
  return "auto"
}

// ---------------------------------------------------------------------------------------------------
// this library → @effect/ai (an @effect/ai model as a route)
// ---------------------------------------------------------------------------------------------------

/** Tool-call arguments as the value @effect/ai's tool-call parts carry (the raw text if it is not JSON). */
export const parseArguments = (text: string): unknown => {
  if (text.trim().length === 0) return {}
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/** A tool message's content as a result value: JSON when it is JSON (so it is not encoded twice). */
const resultValue = (content: string): unknown => {
  try {
    return JSON.parse(content)
  } catch {
    return content
  }
}

/**
 * Our user content as @effect/ai's: text parts, and file parts whose data is a `URL` or bytes. Never a
 * base64 string: @effect/ai-openai 0.41 reads a string as a file id and drops any other string
 * silently, while every provider package encodes bytes. Throws (inside `promptFromRequest`'s `try`)
 * on a URL that does not parse or base64 that does not decode, so the reason reaches the caller.
 */
const encodedUserContent = (content: Message["content"]): string | ReadonlyArray<Prompt.UserMessagePartEncoded> =>
  typeof content === "string" ? content : content.map((part): Prompt.UserMessagePartEncoded => {
    if (part._tag === "Text") return { type: "text", text: part.text }
    const media = mediaOf(part)
    const data = media.url !== undefined ? new URL(media.url) : Either.getOrThrowWith(
      Encoding.decodeBase64(media.base64 ?? ""),
      () => new Error(`the ${media.mediaType} part's data is not base64`)
    )
    return { type: "file", mediaType: media.mediaType, data, ...opt("fileName", part.filename) }
  })

const encodedMessage = (
  message: Message,
  toolNames: ReadonlyMap<string, string>
): Prompt.MessageEncoded => {
  const text = messageText(message.content)
  switch (message.role) {
    case "system":
      return { role: "system", content: text }
    case "user":
      return { role: "user", content: encodedUserContent(message.content) }
    case "assistant":
      return {
        role: "assistant",
        content: [
          ...(text.length > 0 ? [{ type: "text" as const, text }] : []),
          ...(message.toolCalls ?? []).map((call) => ({
            type: "tool-call" as const,
            id: call.id,
            name: call.name,
            params: parseArguments(call.arguments),
            providerExecuted: false
          }))
        ]
      }
    case "tool": {
      const id = message.toolCallId ?? ""
      return {
        role: "tool",
        content: [{
          type: "tool-result",
          id,
          // Our tool messages may omit the name; the call they answer has it.
          name: message.name ?? toolNames.get(id) ?? "",
          result: resultValue(text),
          isFailure: false,
          providerExecuted: false
        }]
      }
    }
  }
}

/**
 * The @effect/ai prompt for a chain request: the request's `system` first, then its messages. Fails
 * (with the reason) only when @effect/ai's own prompt schema refuses what was built.
 */
export const promptFromRequest = (request: GenerateRequest): Effect.Effect<Prompt.Prompt, string> => {
  const toolNames = new Map<string, string>()
  for (const message of request.messages) for (const call of message.toolCalls ?? []) toolNames.set(call.id, call.name)
  return Effect.try({
    // Inside the try: a part's URL that does not parse is refused with the reason, like the prompt.
    try: () =>
      Prompt.make([
        ...(request.system !== undefined && request.system.length > 0 ? [{ role: "system" as const, content: request.system }] : []),
        ...request.messages.map((message) => encodedMessage(message, toolNames))
      ]),
    catch: (error) => `the request could not be expressed as an @effect/ai prompt: ${error instanceof Error ? error.message : String(error)}`
  })
}

/**
 * A parameters schema that carries a JSON Schema verbatim and decodes any object unchanged: the
 * route only forwards tool calls to the chain's caller, who owns the real schema, so nothing may be
 * stripped or rejected on the way (a plain `Schema.Struct({})` would drop every argument).
 */
const jsonSchemaParameters = (jsonSchema: Readonly<Record<string, unknown>>) =>
  Schema.Struct({}, Schema.Record({ key: Schema.String, value: Schema.Unknown })).annotations({ jsonSchema })

/** What @effect/ai's tool-aware calls need: the tools, by name, with a handler table. */
export type ForwardingToolkit = Toolkit.WithHandler<Record<string, Tool.Any>>

/**
 * A toolkit that offers the request's tools to an @effect/ai model and never runs them: the calls
 * go back to the chain's caller (resolution is disabled on every call that uses it).
 */
export const forwardingToolkit = (definitions: ReadonlyArray<ToolDefinition>): ForwardingToolkit => {
  const tools: Record<string, Tool.Any> = {}
  for (const definition of definitions) {
    tools[definition.name] = Tool.make(definition.name, { description: definition.description })
      .setParameters(jsonSchemaParameters(definition.parameters))
  }
  return {
    tools,
    handle: (name) => Effect.dieMessage(`tool '${String(name)}' was asked to run inside a route; its calls belong to the chain's caller`)
  }
}

/** The chain's tool choice in @effect/ai's terms. */
export const toolChoiceFor = (choice: GenerateRequest["toolChoice"]): "auto" | "none" | "required" | { readonly tool: string } =>
  choice === undefined ? "auto" : typeof choice === "string" ? choice : { tool: choice.name }

/**
 * A schema for a structured-output request that carries the chain's JSON Schema to the provider and
 * accepts any JSON object: the chain's own gate decodes the answer against the caller's real schema
 * (and repairs or reroutes), so nothing is decided here. (@effect/ai requires an object-encoded
 * schema; an answer that is not an object is still judged by the gate — see `structuredParts`.)
 */
export const passThroughObjectSchema = (jsonSchema: Readonly<Record<string, unknown>>) =>
  Schema.Record({ key: Schema.String, value: Schema.Unknown }).annotations({ jsonSchema })
