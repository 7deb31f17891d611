/**
 * Waiting for a descriptor to become readable or writable without blocking
 * the event loop, the same way on Deno and Bun.
 *
 * One waiter thread per process blocks in `poll(2)`; the event loop only
 * hears from it when a descriptor is ready, so an idle wait costs nothing.
 * A wait can be cancelled with an `AbortSignal`, and `ref: false` lets the
 * process exit while it is pending.
 *
 * @module
 */
import { readdirSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { EFD_NONBLOCK, POLLIN, POLLOUT } from "./platform.ts";
import { eventfd, write } from "./fd.ts";
import { SLOT_FIELDS, SLOTS, type WaiterInit } from "./wait_table.ts";

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
}

interface Pending {
  seq: number;
  ref: boolean;
  resolve(revents: number): void;
  reject(err: Error): void;
}

class Waiter {
  readonly #table = new Int32Array(
    new SharedArrayBuffer(SLOTS * SLOT_FIELDS * 4),
  );
  readonly #pending = new Map<number, Pending>();
  readonly #wakeFd = eventfd(EFD_NONBLOCK);
  readonly #worker: Worker;
  #seq = 0;
  #refs = 0;
  #failure: Error | undefined;

  constructor() {
    for (let slot = 0; slot < SLOTS; slot++) {
      this.#table[slot * SLOT_FIELDS] = -1;
    }
    const init: WaiterInit = {
      table: this.#table.buffer as SharedArrayBuffer,
      wakeFd: this.#wakeFd,
    };
    this.#worker = new Worker(waiterModule(), {
      workerData: init,
    });
    this.#worker.on("message", ([slot, seq, revents]: number[]) => {
      const pending = this.#pending.get(slot);
      if (pending?.seq === seq) {
        this.#release(slot, false);
        pending.resolve(revents);
      }
    });
    this.#worker.on("error", (err: Error) => this.#fail(err));
    this.#worker.on(
      "exit",
      (code: number) =>
        this.#fail(
          new Error(`tableroll's waiter thread exited (code ${code})`),
        ),
    );
    // After adding the listeners: in Bun, adding one refs the worker again.
    this.#worker.unref();
  }

  wait(fd: number, events: number, options: WaitOptions): Promise<number> {
    const { signal, ref = true } = options;
    if (this.#failure) return Promise.reject(this.#failure);
    if (signal?.aborted) return Promise.reject(signal.reason);
    const slot = this.#freeSlot();
    const seq = ++this.#seq & 0x7fffffff;
    return new Promise<number>((resolve, reject) => {
      const onAbort = () => {
        if (this.#pending.get(slot)?.seq !== seq) return;
        this.#release(slot, true);
        reject(signal!.reason);
      };
      const settle = () => signal?.removeEventListener("abort", onAbort);
      this.#pending.set(slot, {
        seq,
        ref,
        resolve: (revents) => {
          settle();
          resolve(revents);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      });
      if (ref && this.#refs++ === 0) this.#worker.ref();
      const base = slot * SLOT_FIELDS;
      Atomics.store(this.#table, base + 1, seq);
      Atomics.store(this.#table, base + 2, events);
      Atomics.store(this.#table, base, fd);
      this.#wake();
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #freeSlot(): number {
    for (let slot = 0; slot < SLOTS; slot++) {
      if (!this.#pending.has(slot)) return slot;
    }
    throw new RangeError(`more than ${SLOTS} descriptors waited for at once`);
  }

  /** Frees `slot`; the waiter must be told only when it may still be polling it. */
  #release(slot: number, tellWaiter: boolean): void {
    const pending = this.#pending.get(slot)!;
    this.#pending.delete(slot);
    Atomics.store(this.#table, slot * SLOT_FIELDS, -1);
    if (pending.ref && --this.#refs === 0) this.#worker.unref();
    if (tellWaiter) this.#wake();
  }

  /** The thread is gone (its module failed to load, say): every wait fails now and later. */
  #fail(err: Error): void {
    this.#failure ??= err;
    for (const [slot, pending] of [...this.#pending]) {
      this.#release(slot, false);
      pending.reject(this.#failure);
    }
  }

  #wake(): void {
    write(this.#wakeFd, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
  }
}

/**
 * Where the waiter thread's module is. In a `bun build --compile`
 * executable every module reports the executable's URL, and the worker sits
 * wherever it was added as an extra entry point, compiled to `.js`.
 */
function waiterModule(): URL | string {
  const url = new URL("./wait_worker.ts", import.meta.url);
  if (!url.href.startsWith("file:///$bunfs/")) return url;
  const root = "/$bunfs/root";
  const found = readdirSync(root, { recursive: true })
    .map(String)
    .find((name) => name.endsWith("wait_worker.js"));
  if (!found) {
    throw new Error(
      "this executable lacks tableroll's waiter thread: add ffi/wait_worker.ts as an entry point, " +
        "e.g. bun build --compile app.ts <path to tableroll>/ffi/wait_worker.ts",
    );
  }
  return `${root}/${found}`;
}

let waiter: Waiter | undefined;

/**
 * Starts the waiter thread now rather than at the first wait. Starting it
 * blocks the caller (about 40 ms on Deno, 5 ms on Bun), so a program that
 * will wait soon can pay that before a time-critical exchange.
 */
export function startWaiter(): void {
  theWaiter();
}

function theWaiter(): Waiter {
  return waiter ??= new Waiter();
}

/**
 * Resolves with the `poll(2)` `revents` once `fd` is ready for `events`
 * (`POLLIN`, `POLLOUT`). Error and hang-up conditions also resolve it, so the
 * caller's next read or write reports them.
 */
export function waitFor(
  fd: number,
  events: number,
  options: WaitOptions = {},
): Promise<number> {
  return theWaiter().wait(fd, events, options);
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
