/**
 * `--otel`: spans and metrics through `@effect/opentelemetry`. Exporters:
 *
 * - OTLP/HTTP (`--otel-endpoint`, default `OTEL_EXPORTER_OTLP_ENDPOINT` or `http://localhost:4318`):
 *   traces to `/v1/traces`, the library's Effect metrics to `/v1/metrics`;
 * - the terminal (`--otel-console`): one compact line per span on stderr, so `--json` output on
 *   stdout stays a single object;
 * - a JSON-lines file (`--otel-file`): for offline viewing and for the secret-scan test.
 *
 * Every span goes through a redacting exporter before any of them: the values of the API keys in use,
 * and key-shaped tokens, are replaced with `<redacted>` in span names, attributes, event attributes and
 * status messages. The library never puts a key on a span; this is the second line of defence.
 *
 * Spans carry the OpenTelemetry GenAI semantic-convention attributes (`gen_ai.operation.name`,
 * `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.*`, …; see
 * `GenAi`); prompts and answers are never recorded.
 *
 * @since 0.1.0
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type { Attributes, AttributeValue } from "@opentelemetry/api"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, type ReadableSpan, SimpleSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import type * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as fs from "node:fs"
import { redact } from "../internal/redact.js"

/**
 * Where spans go.
 *
 * @since 0.1.0
 * @category models
 */
export interface TelemetryOptions {
  /** OTLP/HTTP endpoint root; `undefined` uses `OTEL_EXPORTER_OTLP_ENDPOINT` or `http://localhost:4318`. */
  readonly endpoint?: string | undefined
  /** Send to OTLP (default: when neither the terminal nor a file was asked for, or an endpoint was given). */
  readonly otlp: boolean
  readonly console: boolean
  readonly file?: string | undefined
  readonly serviceName: string
  /** Values scrubbed from every span. */
  readonly secrets: ReadonlyArray<Redacted.Redacted<string>>
}

type ExportCallback = Parameters<SpanExporter["export"]>[1]

const scrubValue = (value: AttributeValue | undefined, scrub: (text: string) => string): AttributeValue | undefined => {
  if (typeof value === "string") return scrub(value)
  if (Array.isArray(value)) return value.map((v) => (typeof v === "string" ? scrub(v) : v)) as AttributeValue
  return value
}

const scrubAttributes = (attributes: Attributes | undefined, scrub: (text: string) => string): Attributes => {
  const out: Attributes = {}
  for (const [key, value] of Object.entries(attributes ?? {})) out[key] = scrubValue(value, scrub)
  return out
}

/**
 * A copy of the span with every text scrubbed.
 *
 * @since 0.1.0
 * @category redaction
 */
export const scrubSpan = (span: ReadableSpan, scrub: (text: string) => string): ReadableSpan => ({
  name: scrub(span.name),
  kind: span.kind,
  spanContext: () => span.spanContext(),
  ...(span.parentSpanContext !== undefined ? { parentSpanContext: span.parentSpanContext } : {}),
  startTime: span.startTime,
  endTime: span.endTime,
  status: span.status.message === undefined ? span.status : { ...span.status, message: scrub(span.status.message) },
  attributes: scrubAttributes(span.attributes, scrub),
  links: span.links,
  events: span.events.map((event) => ({ ...event, name: scrub(event.name), attributes: scrubAttributes(event.attributes, scrub) })),
  duration: span.duration,
  ended: span.ended,
  resource: span.resource,
  instrumentationScope: span.instrumentationScope,
  droppedAttributesCount: span.droppedAttributesCount,
  droppedEventsCount: span.droppedEventsCount,
  droppedLinksCount: span.droppedLinksCount
})

/**
 * Wraps an exporter so that nothing it receives carries a secret.
 *
 * @since 0.1.0
 * @category redaction
 */
export class RedactingSpanExporter implements SpanExporter {
  constructor(readonly inner: SpanExporter, readonly scrub: (text: string) => string) {}
  export(spans: Array<ReadableSpan>, resultCallback: ExportCallback): void {
    this.inner.export(spans.map((span) => scrubSpan(span, this.scrub)), resultCallback)
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown()
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve()
  }
}

const hrToMs = (time: readonly [number, number]) => time[0] * 1000 + time[1] / 1e6

/** A span as plain JSON (the file exporter's line format). */
const spanJson = (span: ReadableSpan) => ({
  name: span.name,
  traceId: span.spanContext().traceId,
  spanId: span.spanContext().spanId,
  parentSpanId: span.parentSpanContext?.spanId,
  startMs: hrToMs(span.startTime),
  durationMs: Math.round(hrToMs(span.duration) * 1000) / 1000,
  status: span.status,
  attributes: span.attributes,
  events: span.events.map((event) => ({ name: event.name, attributes: event.attributes }))
})

/**
 * Writes each span as one JSON line to a file.
 *
 * @since 0.1.0
 * @category exporters
 */
export class FileSpanExporter implements SpanExporter {
  constructor(readonly path: string) {
    fs.writeFileSync(path, "")
  }
  export(spans: Array<ReadableSpan>, resultCallback: ExportCallback): void {
    try {
      fs.appendFileSync(this.path, spans.map((span) => `${JSON.stringify(spanJson(span))}\n`).join(""))
      resultCallback({ code: 0 })
    } catch (error) {
      resultCallback({ code: 1, error: error instanceof Error ? error : new Error(String(error)) })
    }
  }
  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}

/**
 * Prints one compact line per span on stderr: name, duration, status and the GenAI attributes.
 *
 * @since 0.1.0
 * @category exporters
 */
export class TerminalSpanExporter implements SpanExporter {
  export(spans: Array<ReadableSpan>, resultCallback: ExportCallback): void {
    for (const span of spans) {
      const attributes = Object.entries(span.attributes)
        .filter(([key]) => key.startsWith("gen_ai.") || key.startsWith("llm.") || key === "error.type")
        .map(([key, value]) => `${key}=${Array.isArray(value) ? value.join(",") : String(value)}`)
        .join(" ")
      const status = span.status.code === 2 ? ` ERROR${span.status.message !== undefined ? ` ${span.status.message}` : ""}` : ""
      process.stderr.write(`[otel] ${span.name} ${hrToMs(span.duration).toFixed(1)}ms${status}${attributes.length > 0 ? ` ${attributes}` : ""}\n`)
    }
    resultCallback({ code: 0 })
  }
  shutdown(): Promise<void> {
    return Promise.resolve()
  }
}

/**
 * The tracer (and, with OTLP, metrics) layer. Spans are flushed when the layer's scope closes.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: TelemetryOptions): Layer.Layer<never> => {
  const secrets = options.secrets.map(Redacted.value)
  const scrub = (text: string) => redact(text, secrets)
  const processors: Array<SpanProcessor> = []
  const wrap = (exporter: SpanExporter) => new RedactingSpanExporter(exporter, scrub)
  const endpoint = options.endpoint?.replace(/\/+$/, "")
  if (options.console) processors.push(new SimpleSpanProcessor(wrap(new TerminalSpanExporter())))
  if (options.file !== undefined) processors.push(new SimpleSpanProcessor(wrap(new FileSpanExporter(options.file))))
  if (options.otlp) {
    processors.push(
      new BatchSpanProcessor(wrap(new OTLPTraceExporter(endpoint !== undefined ? { url: `${endpoint}/v1/traces` } : {})), {
        scheduledDelayMillis: 500
      })
    )
  }
  return NodeSdk.layer(() => ({
    resource: { serviceName: options.serviceName, serviceVersion: "0.1.0" },
    spanProcessor: processors,
    ...(options.otlp
      ? {
        metricReader: new PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter(endpoint !== undefined ? { url: `${endpoint}/v1/metrics` } : {}),
          exportIntervalMillis: 5_000
        })
      }
      : {}),
    shutdownTimeout: "3 seconds"
  }))
}
