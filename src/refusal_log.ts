/**
 * The log of refused control connections. A refusal is logged in full when
 * none was logged for a while; those that follow within a window are counted
 * and reported in one line when it ends. A client that keeps connecting to
 * the control socket (a health probe pointed at it, a flood) then costs one
 * line a window, not one per connection, and no line's cost (the reason may
 * read `/proc`) is paid for a refusal that is only counted.
 *
 * @module
 */
import { everyUnref } from "../ffi/wait.ts";
import type { Logger } from "./events.ts";

/** How long refusals after a logged one are counted instead of logged. */
export const REFUSAL_WINDOW_MS = 60_000;

/** How many of the refused pids a summary names. */
const NAMED_PIDS = 5;

/** Refused control connections, logged at most once a window (see the module doc). */
export class RefusalLog {
  readonly #logger: Logger;
  readonly #windowMs: number;
  /** Ends the current window's timer; `undefined` when no window is open. */
  #stopTimer: (() => void) | undefined;
  #counted = 0;
  /** The first pids counted in this window. */
  readonly #pids = new Set<number>();
  /** Whether pids beyond those were counted too. */
  #otherPids = false;

  /**
   * Logs to `logger` at level `warn`, with windows of `windowMs`; a pending
   * summary is logged when `signal` aborts.
   */
  constructor(
    logger: Logger,
    signal: AbortSignal,
    windowMs: number = REFUSAL_WINDOW_MS,
  ) {
    this.#logger = logger;
    this.#windowMs = windowMs;
    signal.addEventListener("abort", () => this.#close(), { once: true });
  }

  /**
   * Reports that the process `pid` was refused: logs `reason()` if no window
   * is open and opens one, else counts it for the window's summary.
   */
  refused(pid: number, reason: () => string): void {
    if (this.#stopTimer) {
      this.#counted++;
      if (this.#pids.size < NAMED_PIDS) this.#pids.add(pid);
      else if (!this.#pids.has(pid)) this.#otherPids = true;
      return;
    }
    // Opened first: a reason or logger that throws is not retried per refusal.
    this.#stopTimer = everyUnref(() => this.#endWindow(), this.#windowMs);
    this.#logger.warn(reason());
  }

  /**
   * At the end of a window: the summary, and another window, if anything
   * was counted; else the next refusal is logged in full.
   */
  #endWindow(): void {
    if (this.#counted === 0) this.#close();
    else this.#summarise();
  }

  /** Logs what is counted, if anything, and closes the window. */
  #close(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    if (this.#counted > 0) this.#summarise();
  }

  #summarise(): void {
    const counted = this.#counted;
    const pids = [...this.#pids].join(", ") +
      (this.#otherPids ? " and others" : "");
    const plural = this.#pids.size > 1 || this.#otherPids;
    this.#counted = 0;
    this.#pids.clear();
    this.#otherPids = false;
    try {
      this.#logger.warn(
        `tableroll: refused ${counted} more connection${
          counted === 1 ? "" : "s"
        } on the control socket in the last ${
          this.#windowMs / 1000
        } s, from pid${plural ? "s" : ""} ${pids}`,
      );
    } catch {
      // From a timer or an abort listener a throw would end the process,
      // and there is nobody else to tell that the logger failed.
    }
  }
}
