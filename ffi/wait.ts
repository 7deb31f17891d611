/**
 * Waiting for a descriptor to become readable or writable without blocking
 * the event loop and without a thread, the same way on Deno and Bun.
 *
 * Every pending wait is checked with one non-blocking `poll(2)` sweep, run
 * when the wait starts and whenever the process receives the readiness
 * signal, {@linkcode READINESS_SIGNAL}. A wait on a descriptor the caller
 * owns alone (`exclusive: true`, a socket or pipe) asks the kernel for that
 * signal: `F_SETOWN` to this process, `F_SETSIG` and `O_ASYNC` while the
 * wait is pending, cleared again when the last wait on it ends. Every other
 * wait (a shared socket, a pidfd, an eventfd, a regular file: no signal for
 * them) is swept by a short timer that runs only while such a wait is
 * pending. So is every `POLLOUT` wait: the kernel signals write space only
 * after a write was refused while `O_ASYNC` was set, which
 * {@linkcode signalUntilClosed} arranges for the sockets it is asked to.
 *
 * The signal is `SIGURG`, not `SIGIO`: its default action is to ignore it,
 * so a signal that finds no listener (an application called Bun's
 * `process.removeAllListeners()`) can never end the process, and an
 * application's own `SIGIO` handling never hears the library's sockets. The
 * listener is installed before the first `O_ASYNC` is set and stays for the
 * life of the process, beside any listener the application has; on Bun,
 * where an application can remove it (and Bun tells no one), it is installed
 * again at the next wait, and a backstop sweep settles what a missed signal
 * would have: 1 s after a signalled wait starts, then at doubling intervals
 * up to every 30 s. Not every second for ever: on Bun each wake of an idle
 * process costs milliseconds of CPU (measured: 3–7 ms per wake of an idle
 * owner, 0.4 % of a core for a sweep every second). Where no listener can
 * be installed, waits are swept instead.
 * Neither the listener nor the timers keep the process alive: a `ref: true`
 * wait holds the process open with {@linkcode keepAlive}.
 *
 * The timers here cost nothing at start-up on either runtime: Deno 2.9's
 * global `setTimeout` and `setInterval` are Node's, whose first call loads
 * part of the Node compatibility layer (5–16 ms on the main thread), so a
 * wait holds the process open with a `MessagePort` on Deno (a long interval
 * on Bun) and {@linkcode delay} times with `AbortSignal.timeout`.
 *
 * @module
 */
import {
  backend,
  F_GETFL,
  F_SETFL,
  F_SETOWN,
  F_SETSIG,
  layout,
  O_ASYNC,
  POLLFD,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  S_IFIFO,
  S_IFMT,
  S_IFSOCK,
  SIGURG,
} from "./libc.ts";
/** Options of {@linkcode waitFor}. */
export interface WaitOptions {
  /** Cancels the wait; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Whether the pending wait keeps the process alive (default `true`). Use
   * `false` for a wait that should not hold the process open by itself, like
   * a server's accept loop.
   */
  ref?: boolean;
  /**
   * The caller asserts that this process alone holds the descriptor's open
   * file description: it created, accepted or connected the socket (or pipe)
   * and never passed it on (default `false`). A `POLLIN` wait is then woken
   * by the readiness signal within microseconds; `O_ASYNC` and the signal owner are set on
   * the description while the wait is pending and cleared when the last wait
   * on it ends. Never claim this for an inherited or handed-over socket: the
   * flag would be shared with every other process that holds it. A `POLLOUT`
   * wait is checked every 4 ms in any case, and woken by the signal after a
   * refused write on a descriptor kept signalling with
   * {@linkcode signalUntilClosed}. Other waits are checked every 4 ms while
   * pending.
   */
  exclusive?: boolean;
}

const isDeno = "Deno" in globalThis;

/** The signal that readiness of an exclusive wait's descriptor raises. */
export const READINESS_SIGNAL = "SIGURG";

/** How often waits without a signal (shared descriptors, pidfds, files) are checked. */
const SWEEP_INTERVAL_MS = 4;
/**
 * When Bun's signalled waits are checked too, in case the listener was
 * removed: this long after a signalled wait starts, then twice as long
 * after each check, up to {@linkcode BACKSTOP_MAX_MS}.
 */
const BACKSTOP_FIRST_MS = 1_000;
const BACKSTOP_MAX_MS = 30_000;

interface Wait {
  readonly fd: number;
  readonly events: number;
  readonly ref: boolean;
  /** Whether this wait set `O_ASYNC` on its descriptor, so that a signal may wake it. */
  readonly signalled: boolean;
  /** Whether the sweep timer checks this wait. */
  readonly swept: boolean;
  settle(revents: number): void;
  /** Removes the abort listener. */
  detach(): void;
}

const pending = new Set<Wait>();
/** Descriptors with `O_ASYNC` set by this module, and how many waits (or holds) use it. */
const armed = new Map<number, number>();
/** Descriptors kept armed until they are closed: {@linkcode signalUntilClosed}. */
const held = new Set<number>();
let refs = 0;
let timerWaits = 0;
let signalledWaits = 0;
let releaseHold: (() => void) | undefined;
let stopSweeps: (() => void) | undefined;
let stopBackstop: (() => void) | undefined;
let pollfds = new Uint8Array(POLLFD.size * 64);

/**
 * Resolves with the `poll(2)` `revents` once `fd` is ready for `events`
 * (`POLLIN`, `POLLOUT`). Error and hang-up conditions also resolve it, so the
 * caller's next read or write reports them; a descriptor closed with this
 * module's `close` while waited on resolves it with `POLLNVAL`.
 *
 * @example Waiting for a socket pair's other end to write
 * ```ts
 * import { close, POLLIN, socketPair, waitReadable, writeAll } from "./mod.ts";
 *
 * const [a, b] = socketPair();
 * const ready = waitReadable(b, { exclusive: true });
 * writeAll(a, new Uint8Array([1]));
 * if (!((await ready) & POLLIN)) throw new Error("expected POLLIN");
 * close(a);
 * close(b);
 * ```
 */
export function waitFor(
  fd: number,
  events: number,
  options: WaitOptions = {},
): Promise<number> {
  const { signal, ref = true, exclusive = false } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<number>((resolve, reject) => {
    const onAbort = () => {
      if (finish(wait)) reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const signalled = exclusive && arm(fd);
    const wait: Wait = {
      fd,
      events,
      ref,
      signalled,
      // Write space is signalled only after a refused write, which not every
      // caller has made: POLLOUT is swept as well.
      swept: !signalled || (events & POLLOUT) !== 0,
      settle: (revents) => {
        if (finish(wait)) resolve(revents);
      },
      detach: () => signal?.removeEventListener("abort", onAbort),
    };
    pending.add(wait);
    if (ref && refs++ === 0) releaseHold = keepAlive();
    if (wait.swept && timerWaits++ === 0) {
      stopSweeps = everyUnref(sweep, SWEEP_INTERVAL_MS);
    }
    if (signalled && !isDeno) {
      signalledWaits++;
      startBackstop();
    }
    // Readiness that came before O_ASYNC was set raises no signal.
    sweep([wait]);
  });
}

/** {@linkcode waitFor} with `POLLIN`. */
export function waitReadable(
  fd: number,
  options?: WaitOptions,
): Promise<number> {
  return waitFor(fd, POLLIN, options);
}

/** {@linkcode waitFor} with `POLLOUT`. */
export function waitWritable(
  fd: number,
  options?: WaitOptions,
): Promise<number> {
  return waitFor(fd, POLLOUT, options);
}

/**
 * Keeps `O_ASYNC` set on `fd`, a socket or pipe this process alone holds,
 * until it is closed with this module's `close`, instead of only while a
 * wait is pending. The kernel marks a socket as waiting for space only when
 * a write is refused while `O_ASYNC` is set, and only then signals when
 * space frees up: with this, an exclusive `POLLOUT` wait after a refused
 * write is woken within microseconds rather than by the 4 ms sweep. Returns
 * `false` when `fd` cannot raise the signal.
 *
 * @example Writing a large message without waiting for the sweep
 * ```ts
 * import {
 *   close,
 *   read,
 *   setNonBlocking,
 *   signalUntilClosed,
 *   socketPair,
 *   waitWritable,
 *   write,
 * } from "./mod.ts";
 *
 * const [a, b] = socketPair();
 * setNonBlocking(a, true);
 * setNonBlocking(b, true);
 * signalUntilClosed(a);
 * const chunk = new Uint8Array(65536);
 * while (write(a, chunk) !== null) {
 *   // until the kernel refuses more
 * }
 * const writable = waitWritable(a, { exclusive: true });
 * while (read(b, 65536) !== null) {
 *   // the reader drains it
 * }
 * await writable;
 * close(a);
 * close(b);
 * ```
 */
export function signalUntilClosed(fd: number): boolean {
  if (held.has(fd)) return true;
  if (!arm(fd)) return false;
  held.add(fd);
  return true;
}

/**
 * Settles every wait on `fd` with `POLLNVAL` and forgets what this module set
 * on it. `close` calls it before closing, while the number still names the
 * same file.
 */
export function forgetDescriptor(fd: number): void {
  for (const wait of pending) {
    if (wait.fd === fd) wait.settle(POLLNVAL);
  }
  // O_ASYNC goes with the descriptor's last close.
  if (held.delete(fd)) armed.delete(fd);
}

/** Removes `wait` and undoes what it set up; `false` if it had already ended. */
function finish(wait: Wait): boolean {
  if (!pending.delete(wait)) return false;
  wait.detach();
  if (wait.ref && --refs === 0) {
    releaseHold!();
    releaseHold = undefined;
  }
  if (wait.signalled) disarm(wait.fd);
  if (wait.swept && --timerWaits === 0) {
    stopSweeps!();
    stopSweeps = undefined;
  }
  if (wait.signalled && !isDeno && --signalledWaits === 0) {
    stopBackstop!();
    stopBackstop = undefined;
  }
  return true;
}

/**
 * (Re)starts Bun's backstop sweep at its first interval: a wait that just
 * started is the one most likely to be waiting on a signal that no listener
 * will hear.
 */
function startBackstop(): void {
  stopBackstop?.();
  let interval = BACKSTOP_FIRST_MS;
  let stopTimer = everyUnref(check, interval);
  const stop = () => stopTimer();
  stopBackstop = stop;
  function check() {
    listenForReadiness();
    sweep(); // may end the last signalled wait, which stops this backstop
    if (stopBackstop !== stop || interval === BACKSTOP_MAX_MS) return;
    interval = Math.min(interval * 2, BACKSTOP_MAX_MS);
    stopTimer();
    stopTimer = everyUnref(check, interval);
  }
}

/** Polls `waits` (default: all pending) once without blocking and settles the ready ones. */
function sweep(waits: Iterable<Wait> = pending): void {
  const list = [...waits];
  if (list.length === 0) return;
  if (pollfds.length < list.length * POLLFD.size) {
    pollfds = new Uint8Array(list.length * POLLFD.size * 2);
  }
  const view = new DataView(pollfds.buffer);
  list.forEach((wait, i) => {
    view.setInt32(i * POLLFD.size + POLLFD.fd, wait.fd, true);
    view.setInt16(i * POLLFD.size + POLLFD.events, wait.events, true);
    view.setInt16(i * POLLFD.size + POLLFD.revents, 0, true);
  });
  // EINTR or ENOMEM: nothing is settled now; the next signal or tick retries.
  if (backend().fn.poll(pollfds, list.length, 0) <= 0) return;
  list.forEach((wait, i) => {
    const revents = view.getInt16(i * POLLFD.size + POLLFD.revents, true);
    if (revents !== 0) wait.settle(revents);
  });
}

/**
 * Sets `O_ASYNC`, the readiness signal and this process as the signal owner
 * on `fd`, or counts one more wait on a descriptor already armed. `false`
 * when `fd` is no socket or pipe (the kernel would accept the flag and never
 * signal), when no listener can be installed, or when `fcntl` fails.
 */
function arm(fd: number): boolean {
  const uses = armed.get(fd);
  if (uses !== undefined) {
    armed.set(fd, uses + 1);
    return true;
  }
  if (!raisesSignals(fd) || !listenForReadiness()) return false;
  const flags = backend().fn.fcntl(fd, F_GETFL, 0);
  if (flags < 0 || backend().fn.fcntl(fd, F_SETOWN, pid()) < 0) return false;
  if (backend().fn.fcntl(fd, F_SETSIG, SIGURG) < 0) return false;
  if (backend().fn.fcntl(fd, F_SETFL, flags | O_ASYNC) < 0) return false;
  armed.set(fd, 1);
  return true;
}

/** Counts one wait less on `fd`; the last one clears `O_ASYNC` again. */
function disarm(fd: number): void {
  const uses = armed.get(fd)! - 1;
  if (uses > 0) {
    armed.set(fd, uses);
    return;
  }
  armed.delete(fd);
  const flags = backend().fn.fcntl(fd, F_GETFL, 0);
  // A descriptor closed behind this module's back has nothing left to clear.
  if (flags >= 0) backend().fn.fcntl(fd, F_SETFL, flags & ~O_ASYNC);
}

let stat: Uint8Array | undefined;

/** Whether the kernel can signal readiness of `fd`: sockets and pipes. */
function raisesSignals(fd: number): boolean {
  stat ??= new Uint8Array(layout().stat.size);
  if (backend().fn.fstat(fd, stat) < 0) return false;
  const kind = new DataView(stat.buffer).getUint32(layout().stat.mode, true) &
    S_IFMT;
  return kind === S_IFSOCK || kind === S_IFIFO;
}

let ownPid: number | undefined;

function pid(): number {
  return ownPid ??= backend().fn.getpid();
}

const onReadiness = () => sweep();
/** The readiness listener: not yet installed, installed, or impossible (waits are swept). */
let listener: "absent" | "installed" | "unavailable" = "absent";

/**
 * Installs the readiness listener (see the module doc); on Bun again if the
 * application removed it. Returns `false` where it cannot be installed.
 */
function listenForReadiness(): boolean {
  if (listener === "unavailable") return false;
  try {
    if (isDeno) {
      // Deno's listeners can only be removed with the function itself.
      if (listener === "absent") {
        Deno.addSignalListener(READINESS_SIGNAL, onReadiness);
      }
    } else if (
      !nodeProcess().listeners(READINESS_SIGNAL).includes(onReadiness)
    ) {
      nodeProcess().on(READINESS_SIGNAL, onReadiness);
    }
    listener = "installed";
    return true;
  } catch {
    listener = "unavailable";
    return false;
  }
}

interface NodeLikeProcess {
  on(event: string, listener: () => void): void;
  listeners(event: string): unknown[];
}

function nodeProcess(): NodeLikeProcess {
  return (globalThis as unknown as { process: NodeLikeProcess }).process;
}

let holds = 0;
let release: (() => void) | undefined;

/**
 * Keeps the process alive until the returned function is called (calling it
 * again does nothing). Holds are counted: the process may end once every
 * hold is released.
 *
 * @example Holding the process open while something is pending
 * ```ts
 * import { keepAlive } from "./wait.ts";
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
 * import { everyUnref } from "./wait.ts";
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
 * import { delay } from "./wait.ts";
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
