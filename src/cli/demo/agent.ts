/**
 * The demo's agent run: a small research agent on the durable runtime (`src/agent`), run as two
 * "processes" over one SQLite checkpoint file — the first is killed in the middle of a model call, the
 * second resumes the same run: journaled steps come back from the checkpoint without a model call, the
 * interrupted step runs again, and an irreversible tool that was refused while the system was degraded
 * runs once it is healthy.
 *
 * Everything the run does is recorded (`Report.Recorder`): model calls through an instrumented
 * `LlmClient`, the agent's step, heartbeat and route events, breaker transitions and the degraded flag.
 *
 * The "crash" is simulated inside this process: the run's fiber is interrupted mid-call and every
 * service of the first "process" (HTTP pool, breakers, degraded flag, checkpoint connection, agent) is
 * thrown away; the second "process" builds them afresh on the same checkpoint file.
 *
 * @since 0.1.0
 */
import * as Deferred from "effect/Deferred"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Agent from "../../agent/Agent.js"
import type * as CheckpointStore from "../../agent/CheckpointStore.js"
import * as Tool from "../../agent/Tool.js"
import * as DegradedMode from "../../DegradedMode.js"
import type { AllRoutesFailed, InvalidOptions } from "../../Errors.js"
import * as Fallback from "../../Fallback.js"
import { LlmClient } from "../../LlmClient.js"
import * as Policy from "../../Policy.js"
import type { Recorder } from "../../Report.js"
import * as GenAi from "../GenAi.js"
import { crashStep } from "./scenario.js"

// ---------------------------------------------------------------------------------------------------
// The research agent
// ---------------------------------------------------------------------------------------------------

const Plan = Schema.Struct({ topic: Schema.String, queries: Schema.Array(Schema.String).pipe(Schema.minItems(1)) })
const Summary = Schema.Struct({ summary: Schema.String, confidence: Schema.Number.pipe(Schema.between(0, 1)) })
const Fact = Schema.Struct({ claim: Schema.String, source: Schema.String })
const Facts = Schema.Struct({ facts: Schema.Array(Fact).pipe(Schema.minItems(1)) })
const Source = Schema.Struct({ title: Schema.String, url: Schema.String })

/** A local, side-effect-free search (the demo makes no network call). */
const webSearch = Tool.make({
  name: "web_search",
  description: "Search the web",
  effect: "pure",
  parameters: Schema.Struct({ queries: Schema.Array(Schema.String) }),
  success: Schema.Array(Source),
  run: ({ queries }) =>
    Effect.succeed(queries.map((query, i) => ({ title: `Result ${i + 1} for "${query}"`, url: `https://example.org/search/${i + 1}` })))
})

const Posted = Schema.Struct({ channel: Schema.String, messageId: Schema.String })

/** Posting to a channel is irreversible (no idempotency key): refused while the system is degraded. */
const postTool = (name: string, posted: Array<string>) =>
  Tool.make({
    name,
    description: "Post a message to a team channel",
    effect: "irreversible",
    parameters: Schema.Struct({ channel: Schema.String, text: Schema.String }),
    success: Posted,
    run: ({ channel, text }, context) =>
      Effect.sync(() => {
        posted.push(`${channel}: ${text.slice(0, 60)}`)
        return { channel, messageId: `msg-${context.index}` }
      })
  })

/**
 * What the agent produced.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResearchResult {
  readonly topic: string
  readonly facts: number
  readonly report: string
  readonly draftRefused: boolean
  readonly published: boolean
}

/** The label of the model call in flight (the agent step it belongs to), for the recorder. */
const currentStep = FiberRef.unsafeMake<string>("model")
const labelled = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) => Effect.locally(effect, currentStep, name)

const system = "You are a careful research assistant. Answer with JSON only."

const program = (posted: Array<string>) =>
  Effect.gen(function*() {
    const plan = yield* labelled(
      "plan",
      Agent.generateObject(Plan, {
        system,
        messages: [{ role: "user", content: "Plan research on why LLM API calls fail in production. JSON: { topic, queries[] }" }],
        maxTokens: 400
      }, { step: "plan", name: "plan" })
    )
    const sources = yield* Agent.callTool(webSearch, { queries: plan.value.queries })
    const summaries: Array<string> = []
    for (const [i, source] of sources.slice(0, 2).entries()) {
      const name = `summarize-${i + 1}`
      const summary = yield* labelled(
        name,
        Agent.generateObject(Summary, {
          system,
          messages: [{ role: "user", content: `Summarise ${source.title} (${source.url}). JSON: { summary, confidence }` }],
          maxTokens: 300
        }, { step: name, name: "summary" })
      )
      summaries.push(summary.value.summary)
    }
    const draftPost = yield* Agent.useTool(postTool("post_draft", posted), { channel: "#research", text: `Draft plan: ${plan.value.topic}` })
    const draft = yield* labelled("draft", Agent.step("draft", Schema.String, streamText("draft", summaries)))
    const facts = yield* labelled(
      "extract-facts",
      Agent.generateObject(Facts, {
        system,
        messages: [{ role: "user", content: `Extract the key facts with sources from:\n${draft}\nJSON: { facts: [{ claim, source }] }` }],
        maxTokens: 500
      }, { step: "extract-facts", name: "facts" })
    )
    const report = yield* labelled(
      crashStep,
      Agent.generate({
        system: "You write short incident-style research reports.",
        messages: [{ role: "user", content: `Write the report on "${plan.value.topic}" from ${facts.value.facts.length} facts.` }],
        maxTokens: 600
      }, { name: crashStep })
    )
    const published = yield* Agent.useTool(postTool("publish_report", posted), { channel: "#research", text: report.text })
    return {
      topic: plan.value.topic,
      facts: facts.value.facts.length,
      report: report.text,
      draftRefused: draftPost._tag === "Refused",
      published: published._tag === "Success"
    } satisfies ResearchResult
  })

/** A streamed answer (the chain restarts on the next route if a route fails after partial output). */
const streamText = (name: string, summaries: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const client = yield* LlmClient
    const request: Fallback.ChainRequest = {
      system: "You draft research notes.",
      messages: [{ role: "user", content: `Draft notes from these summaries:\n- ${summaries.join("\n- ")}` }],
      maxTokens: 600
    }
    return yield* client.stream(request, { onPartialOutputFailure: "restart" }).pipe(
      Stream.runFold("", (text, event) => event._tag === "TextDelta" ? text + event.text : event._tag === "Restarted" ? "" : text),
      Effect.tap(() => Effect.logDebug(`${name} streamed`))
    )
  })

// ---------------------------------------------------------------------------------------------------
// Running it, with a crash and a resume
// ---------------------------------------------------------------------------------------------------

/**
 * What a "process" is built from.
 *
 * @since 0.1.0
 * @category models
 */
export interface AgentDemoOptions<StoreE> {
  readonly runId: string
  readonly recorder: Recorder
  /** The chain's routes (already instrumented by the recorder). */
  readonly routes: ReadonlyArray<Fallback.Route>
  readonly store: Layer.Layer<CheckpointStore.CheckpointStore, StoreE>
  /** The primary's breaker key (`route/model`): irreversible tools refuse while it is open. */
  readonly primaryBreaker: string
  /** Crash the first process during {@link crashStep} (default true). */
  readonly crash?: boolean | undefined
  readonly heartbeatInterval?: Duration.DurationInput | undefined
}

/** The chain as an `LlmClient` whose every call is recorded under the current step's name. */
const recordedClient = (recorder: Recorder, chain: Fallback.Chain, primary: Fallback.Route): Fallback.Chain => {
  const span = <A, E extends AllRoutesFailed | InvalidOptions>(step: string, maxTokens: number, effect: Effect.Effect<Fallback.ChainResult<A>, E>) =>
    GenAi.withChatSpan({ provider: primary.provider.name, model: primary.model, maxTokens, label: step }, recorder.call(step, effect, { step }))
  return {
    generate: (request) => Effect.flatMap(FiberRef.get(currentStep), (step) => span(step, request.maxTokens, chain.generate(request))),
    generateObject: (schema, request, options) =>
      Effect.flatMap(FiberRef.get(currentStep), (step) => span(step, request.maxTokens, chain.generateObject(schema, request, options))),
    stream: (request, options) =>
      Stream.unwrap(Effect.map(FiberRef.get(currentStep), (step) => recorder.callStream(step, chain.stream(request, options), { step }))),
    // The demo agent does not stream objects; its attempts are still recorded by the routes' observers.
    streamObject: (schema, request, options) => chain.streamObject(schema, request, options)
  }
}

/** One "process": its own services, the agent's events mirrored into the recorder. */
const processLayer = <StoreE>(options: AgentDemoOptions<StoreE>) => {
  const client = Layer.effect(
    LlmClient,
    Effect.map(
      Fallback.make({ routes: options.routes, repairAttempts: 1, deadline: "30 seconds", onPartialOutputFailure: "restart" }),
      (chain) => recordedClient(options.recorder, chain, options.routes[0]!)
    )
  )
  const agent = Agent.layer({
    primaryBreaker: options.primaryBreaker,
    heartbeatInterval: options.heartbeatInterval ?? "700 millis",
    leaseDuration: "10 seconds"
  })
  return Layer.mergeAll(client, agent).pipe(
    Layer.provideMerge(Layer.mergeAll(Policy.layerState, DegradedMode.layer, options.store))
  )
}

/** Mirrors the agent's events and the degraded flag into the recorder (until the scope closes). */
const mirror = (recorder: Recorder, crashed: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    const agent = yield* Agent.Agent
    const events = yield* agent.events
    yield* Effect.forkScoped(Stream.runForEach(events, (event) => {
      switch (event._tag) {
        case "RunStarted":
          return event.journaled > 0
            ? recorder.note("resume", `run ${event.runId} resumed from its checkpoint (${event.journaled} journaled steps, lease epoch ${event.epoch})`)
            : recorder.note("info", `run ${event.runId} started`)
        case "StepStarted":
          return Effect.zipRight(
            recorder.stepStarted(event.step),
            event.step === crashStep ? Deferred.succeed(crashed, undefined) : Effect.void
          )
        case "StepReplayed":
          return recorder.stepOutcome({ name: event.step, status: "replayed", detail: "from the checkpoint, no call made" })
        case "StepCompleted":
          return recorder.stepOutcome({
            name: event.step,
            status: event.status === "completed" ? "done" : event.status === "refused" ? "refused" : "failed",
            durationMs: event.durationMs,
            ...(event.status === "refused" ? { detail: "irreversible tool refused while degraded" } : {})
          })
        case "StillWorking":
          return recorder.note("heartbeat", `${event.step} still running (${(event.elapsedMs / 1000).toFixed(1)} s)`)
        case "RouteChanged":
          return recorder.note("degraded", `run switched to its ${event.mode} route: ${event.reason}`)
        case "RunFinished":
          return event.outcome === "completed" ? recorder.note("info", `run ${event.runId} completed`) : Effect.void
      }
    }))
    const degraded = yield* DegradedMode.DegradedMode
    // Only flips are news (the flag also changes when the serving route does).
    yield* Effect.forkScoped(Stream.runForEach(
      Stream.changesWith(degraded.changes, (a, b) => a.degraded === b.degraded).pipe(Stream.drop(1)),
      (state) =>
        recorder.note("degraded", state.degraded ? `DEGRADED: ${state.reason ?? "answers from a fallback route"}` : `healthy again: served by ${state.route ?? "the primary"}`)
    ))
    yield* recorder.followBreakers
  })

/**
 * Runs the research agent: the first "process" crashes during {@link crashStep}; the second resumes.
 *
 * @since 0.1.0
 * @category running
 */
export const runResearchAgent = <StoreE>(options: AgentDemoOptions<StoreE>) =>
  Effect.gen(function*() {
    const posted: Array<string> = []
    const { recorder } = options
    if (options.crash !== false) {
      yield* Effect.scoped(Effect.gen(function*() {
        const crashed = yield* Deferred.make<void>()
        yield* mirror(recorder, crashed)
        const run = yield* Effect.fork(Agent.run(options.runId, program(posted)))
        // The crash: once the step's model call is in flight, the process dies.
        const winner = yield* Effect.raceFirst(
          Effect.as(Effect.zipRight(Deferred.await(crashed), Effect.sleep("600 millis")), "crash" as const),
          Effect.as(Fiber.join(run), "finished" as const)
        )
        if (winner === "crash") {
          yield* Fiber.interrupt(run)
          yield* recorder.stepOutcome({ name: crashStep, status: "interrupted", detail: "the process died mid-call" })
          yield* recorder.note("crash", `the process died during "${crashStep}" (simulated: run interrupted, every in-memory service dropped)`)
        }
      }).pipe(Effect.provide(processLayer(options))))
    }
    return yield* Effect.scoped(Effect.gen(function*() {
      if (options.crash !== false) yield* recorder.resetBreakers("process restarted: new breakers start closed")
      const never = yield* Deferred.make<void>()
      yield* mirror(recorder, never)
      const result = yield* Agent.run(options.runId, program(posted))
      const report = yield* Agent.inspect(options.runId)
      return { result, posted, report }
    })).pipe(Effect.provide(processLayer(options)))
  })
