/**
 * Numbers from request samples: failures, latency percentiles during
 * handovers and outside them, and requests per process over time.
 *
 * @module
 */
import type { Sample } from "./load.ts";

/** A stretch of time in milliseconds, e.g. one handover. */
export interface Interval {
  /** Inclusive start. */
  start: number;
  /** Inclusive end. */
  end: number;
}

/** Latency percentiles of a set of requests, in milliseconds. */
export interface Latency {
  /** Number of requests measured. */
  count: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Slowest. */
  max: number;
}

/** What a set of samples adds up to. */
export interface Totals {
  /** Requests sent. */
  requests: number;
  /** Requests that failed. */
  failed: number;
  /** Failure counts by reason, most frequent first. */
  errors: [reason: string, count: number][];
  /** Latency of successful requests that overlap a handover. */
  handover: Latency;
  /** Latency of successful requests outside every handover. */
  steady: Latency;
}

/** Nearest-rank percentile `p` (0–100) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Median of `values` (any order); NaN when empty. */
export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Percentiles of `latencies` (any order). */
export function latency(latencies: readonly number[]): Latency {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : NaN,
  };
}

/** Whether the request overlaps any of `intervals`. */
export function overlapsAny(
  sample: Interval,
  intervals: readonly Interval[],
): boolean {
  return intervals.some((i) => sample.start <= i.end && sample.end >= i.start);
}

/** Adds up `samples`, splitting latency at the `handovers`. */
export function totals(
  samples: readonly Sample[],
  handovers: readonly Interval[],
): Totals {
  const errors = new Map<string, number>();
  const during: number[] = [];
  const outside: number[] = [];
  for (const sample of samples) {
    if (sample.error !== undefined) {
      errors.set(sample.error, (errors.get(sample.error) ?? 0) + 1);
      continue;
    }
    const ms = sample.end - sample.start;
    (overlapsAny(sample, handovers) ? during : outside).push(ms);
  }
  return {
    requests: samples.length,
    failed: samples.length - during.length - outside.length,
    errors: [...errors].sort((a, b) => b[1] - a[1]),
    handover: latency(during),
    steady: latency(outside),
  };
}

/** Requests per process in fixed time buckets. */
export interface Timeline {
  /** Start of the first bucket. */
  start: number;
  /** Width of a bucket in milliseconds. */
  bucketMs: number;
  /** Number of buckets. */
  buckets: number;
  /** Served requests per bucket (by completion time) for each pid, in order of first appearance. */
  served: Map<number, number[]>;
  /** Failed requests per bucket. */
  failed: number[];
}

/** Buckets `samples` finished within `[start, end)` by completion time. */
export function timeline(
  samples: readonly Sample[],
  start: number,
  end: number,
  bucketMs: number,
): Timeline {
  const buckets = Math.max(1, Math.ceil((end - start) / bucketMs));
  const served = new Map<number, number[]>();
  const failed = new Array<number>(buckets).fill(0);
  for (const sample of samples) {
    const bucket = Math.floor((sample.end - start) / bucketMs);
    if (bucket < 0 || bucket >= buckets) continue;
    if (sample.pid === null) {
      failed[bucket]++;
      continue;
    }
    let counts = served.get(sample.pid);
    if (!counts) {
      counts = new Array<number>(buckets).fill(0);
      served.set(sample.pid, counts);
    }
    counts[bucket]++;
  }
  return { start, bucketMs, buckets, served, failed };
}
