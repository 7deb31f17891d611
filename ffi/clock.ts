/**
 * The system-wide monotonic clock, which every process reads alike.
 *
 * @module
 */
import { CLOCK_MONOTONIC, libc, TIMESPEC } from "./libc.ts";

const timespec = new Uint8Array(TIMESPEC.size);
const view = new DataView(timespec.buffer);

/**
 * `CLOCK_MONOTONIC` in nanoseconds. Unlike `performance.now()` and Deno's or
 * Bun's `process.hrtime`, which count from the process's start, its values
 * can be compared between processes, e.g. to time a message from one to
 * another.
 *
 * @example
 * ```ts
 * import { monotonicNanos } from "./mod.ts";
 *
 * const start = monotonicNanos();
 * console.log(`took ${monotonicNanos() - start} ns`);
 * ```
 */
export function monotonicNanos(): bigint {
  libc.clock_gettime(CLOCK_MONOTONIC, timespec);
  return view.getBigInt64(TIMESPEC.sec, true) * 1_000_000_000n +
    view.getBigInt64(TIMESPEC.nsec, true);
}
