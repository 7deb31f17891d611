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
