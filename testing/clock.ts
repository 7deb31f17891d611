/**
 * The one clock of the demo and the benchmarks: every timestamp is
 * milliseconds on {@linkcode now}.
 *
 * @module
 */

/** Milliseconds since this process started. */
export function now(): number {
  return performance.now();
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
