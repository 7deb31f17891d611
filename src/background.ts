/**
 * Work the library starts and does not await (accepting successors, a
 * handover, a rollback standby, watching a started copy): the one way it is
 * started. Whatever the work throws, synchronously or not, is logged with
 * what was being done and handed to `recover`, which puts the state machine
 * in a safe state; nothing started here can become an unhandled rejection,
 * which would end the service the library lives in.
 *
 * @module
 */
import type { Logger } from "./logger.ts";

/** What to do when background work fails. */
export interface BackgroundOptions {
  /** Where the failure is reported (a guarded logger: it never throws). */
  logger: Logger;
  /** Puts things back in a safe state; what it throws is logged too. */
  recover?: (err: unknown) => void;
}

/**
 * Runs `task` without awaiting it. `what` says what it does, for the log
 * line of a failure (`accepting successors`, `handing over to pid 4711`).
 *
 * @example
 * ```ts ignore
 * inBackground("watching pid 4711", () => watch(4711), {
 *   logger,
 *   recover: () => outcome.final.resolve(),
 * });
 * ```
 */
export function inBackground(
  what: string,
  task: () => Promise<void>,
  { logger, recover }: BackgroundOptions,
): void {
  const failed = (err: unknown) => {
    logger.error(`tableroll: ${what} failed: ${describe(err)}`, {
      error: err,
    });
    try {
      recover?.(err);
    } catch (again) {
      logger.error(
        `tableroll: recovering from the failure of ${what} failed too: ${
          describe(again)
        }; this is a bug in tableroll, please report it`,
        { error: again },
      );
    }
  };
  try {
    task().catch(failed);
  } catch (err) {
    failed(err);
  }
}

/** An error's message, or the value as text. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
