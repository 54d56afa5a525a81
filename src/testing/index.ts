/**
 * The test kit: a scripted in-process provider and an in-process chaos provider for `TestClock` tests,
 * attempt timelines, and a chaos server that speaks the real OpenAI and Anthropic wire formats for
 * tests over real HTTP. See docs/testing.md.
 *
 * @since 0.1.0
 */

/**
 * Scripted in-process `Provider` (no HTTP; delays driven by `TestClock`).
 *
 * @since 0.1.0
 */
export * as MockProvider from "./MockProvider.js"

/**
 * A local HTTP server that fails on demand in both providers' wire formats.
 *
 * @since 0.1.0
 */
export * as ChaosServer from "./ChaosServer.js"

/**
 * The chaos server's scenario format (JSON, validated with Schema).
 *
 * @since 0.1.0
 */
export * as Scenario from "./Scenario.js"

/**
 * The chaos server's fault model as an in-process `Provider` (no socket; `TestClock`-driven).
 *
 * @since 0.1.0
 */
export * as ChaosProvider from "./ChaosProvider.js"

/**
 * Attempt timelines (times, routes, outcomes) and a runner that drives `TestClock` to completion.
 *
 * @since 0.1.0
 */
export * as Timeline from "./Timeline.js"
