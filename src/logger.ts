/**
 * The logger the upgrader writes to. `console` and an `@std/log` `Logger`
 * both satisfy it.
 *
 * @module
 */

/** Where the upgrader reports what it does. */
export interface Logger {
  /** Protocol steps. */
  debug(message: string, ...args: unknown[]): unknown;
  /** Handovers that happened. */
  info(message: string, ...args: unknown[]): unknown;
  /** Failed handovers after which this process keeps serving. */
  warn(message: string, ...args: unknown[]): unknown;
  /** Failures that need attention. */
  error(message: string, ...args: unknown[]): unknown;
}

const ignore = () => {};

/** A logger that discards everything (the default, as in Go tableroll). */
export const silentLogger: Logger = {
  debug: ignore,
  info: ignore,
  warn: ignore,
  error: ignore,
};

/**
 * `logger` made safe to call from anywhere in the library: a method that
 * throws, or returns a promise that rejects, is reported once on stderr (the
 * logger itself cannot say it) and otherwise ignored, so a broken logger
 * never interrupts a state change or a handover.
 */
export function guardLogger(logger: Logger): Logger {
  let reported = false;
  const report = (err: unknown, message: string) => {
    if (reported) return;
    reported = true;
    console.error(
      `tableroll: the logger failed (${
        (err as Error)?.message ?? err
      }) on: ${message}; its failures are ignored from now on: fix the logger`,
    );
  };
  const guard =
    (level: keyof Logger) => (message: string, ...args: unknown[]) => {
      try {
        const result = logger[level](message, ...args);
        if (result instanceof Promise) {
          result.catch((err) => report(err, message));
        }
      } catch (err) {
        report(err, message);
      }
    };
  return {
    debug: guard("debug"),
    info: guard("info"),
    warn: guard("warn"),
    error: guard("error"),
  };
}
