/**
 * Timers for the library's own waits that cost nothing at start-up on either
 * runtime.
 *
 * Deno 2.9's global `setTimeout` and `setInterval` are Node's: the first call
 * in a process loads part of the Node compatibility layer, 5–16 ms on the
 * main thread here, and during a takeover that lands on the critical path
 * (a successor's first wait, an owner's first handover). So a wait holds the
 * process open with a counted {@linkcode keepAlive}: a `MessagePort` with a
 * listener on Deno (an open port keeps its event loop running, a closed one
 * lets it end), a long interval on Bun, whose timers cost nothing to start.
 * {@linkcode delay} times with `AbortSignal.timeout`, which runs on the
 * runtime's own timers (0.5 ms for the first on Deno).
 *
 * @module
 */

const isDeno = "Deno" in globalThis;

let holds = 0;
let release: (() => void) | undefined;

/**
 * Keeps the process alive until the returned function is called (calling it
 * again does nothing). Holds are counted: the process may end once every
 * hold is released.
 *
 * @example Holding the process open while something is pending
 * ```ts
 * import { keepAlive } from "./timers.ts";
 *
 * const done = keepAlive();
 * queueMicrotask(done);
 * ```
 */
export function keepAlive(): () => void {
  if (holds++ === 0) release = openHold();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holds === 0) {
      release!();
      release = undefined;
    }
  };
}

function openHold(): () => void {
  if (isDeno) {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {};
    return () => {
      port1.close();
      port2.close();
    };
  }
  const timer = setInterval(() => {}, 1 << 30);
  return () => clearInterval(timer);
}

/**
 * Calls `tick` every `ms` milliseconds until the returned function is
 * called. It never keeps the process alive. On Deno this is Node's
 * `setInterval` (an unref'd `AbortSignal.timeout` does not exist there: a
 * listener refs it), so its first use costs what the module doc says; the
 * library uses it only for waits that `SIGIO` cannot wake.
 *
 * @example
 * ```ts
 * import { everyUnref } from "./timers.ts";
 *
 * let ticks = 0;
 * const stop = everyUnref(() => ticks++, 4);
 * stop();
 * ```
 */
export function everyUnref(tick: () => void, ms: number): () => void {
  const timer = setInterval(tick, ms);
  // Deno numbers its timers, Bun hands out objects.
  if (typeof timer === "number") Deno.unrefTimer(timer);
  else (timer as { unref(): void }).unref();
  return () => clearInterval(timer);
}

/**
 * Resolves after `ms` milliseconds, keeping the process alive meanwhile;
 * rejects with `signal`'s reason if it aborts first.
 *
 * @example
 * ```ts
 * import { delay } from "./timers.ts";
 *
 * await delay(1);
 * ```
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const done = keepAlive();
    const timeout = AbortSignal.timeout(ms);
    const finish = () => {
      done();
      timeout.removeEventListener("abort", onTimeout);
      signal?.removeEventListener("abort", onAbort);
    };
    const onTimeout = () => {
      finish();
      resolve();
    };
    const onAbort = () => {
      finish();
      reject(signal!.reason);
    };
    timeout.addEventListener("abort", onTimeout, { once: true });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
