/**
 * Pre-tagged metrics. `Metric.tagged(m, k, v)` re-creates and re-hashes its key on *every* update
 * (it unions the tag arrays per call, which defeats the registry's per-array hook cache): ≈3 µs per
 * increment. A metric built from a key that already carries its tags resolves its hook once and then
 * updates in tens of nanoseconds. The policies update counters on every attempt, so they build them
 * here, once per label set.
 *
 * @internal
 */
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import type * as MetricBoundaries from "effect/MetricBoundaries"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"

const labelsOf = (tags: Readonly<Record<string, string>>): Array<MetricLabel.MetricLabel> =>
  Object.entries(tags).map(([key, value]) => MetricLabel.make(key, value))

/** A counter with fixed tags. */
export const counter = (
  name: string,
  description: string,
  tags: Readonly<Record<string, string>>
): Metric.Metric.Counter<number> =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.counter(name, { description }), labelsOf(tags)))

/** A gauge with fixed tags. */
export const gauge = (
  name: string,
  description: string,
  tags: Readonly<Record<string, string>>
): Metric.Metric.Gauge<number> =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.gauge(name, { description }), labelsOf(tags)))

/** A histogram with fixed tags. */
export const histogram = (
  name: string,
  description: string,
  boundaries: MetricBoundaries.MetricBoundaries,
  tags: Readonly<Record<string, string>>
): Metric.Metric<MetricKeyType.MetricKeyType.Histogram, number, unknown> =>
  Metric.fromMetricKey(MetricKey.taggedWithLabels(MetricKey.histogram(name, boundaries, description), labelsOf(tags)))

/** Counters of one metric name keyed by a tag value, each built on first use. */
export const counterFamily = (
  name: string,
  description: string,
  fixed: Readonly<Record<string, string>>,
  key: string
): (value: string) => Metric.Metric.Counter<number> => {
  const cache = new Map<string, Metric.Metric.Counter<number>>()
  return (value) => {
    let metric = cache.get(value)
    if (metric === undefined) {
      metric = counter(name, description, { ...fixed, [key]: value })
      cache.set(value, metric)
    }
    return metric
  }
}
