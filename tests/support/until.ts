/**
 * Polling for a condition in tests that watch other processes.
 *
 * @module
 */
import { assert } from "./assert.ts";

/**
 * Polls `condition` (which may be async) every 20 ms until it returns a
 * value other than `undefined` or `false`, and returns that value; fails
 * after `timeoutMs`.
 */
export async function until<T>(
  condition: () =>
    | T
    | undefined
    | false
    | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== undefined && value !== false) return value;
    assert(Date.now() < deadline, `${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * `promise`, or a rejection naming `what` (a text, or a function giving one
 * at that moment) once `ms` passed.
 */
export async function within<T>(
  promise: Promise<T>,
  ms: number,
  what: string | (() => string) = "pending",
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const name = typeof what === "string" ? what : what();
          reject(new Error(`${name}: not within ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
