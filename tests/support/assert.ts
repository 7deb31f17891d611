/**
 * The few assertions the tests need (`@std/assert` is not reachable here).
 *
 * @module
 */
import { inspect, isDeepStrictEqual } from "node:util";
import { TablerollError, type TablerollErrorCode } from "../../mod.ts";

/** Thrown by a failed assertion. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Fails unless `condition` is truthy. */
export function assert(
  condition: unknown,
  message = "assertion failed",
): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Fails unless `actual` and `expected` are deeply equal. */
export function assertEquals<T>(
  actual: T,
  expected: T,
  message?: string,
): void {
  if (!isDeepStrictEqual(actual, expected)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}expected ${inspect(expected)}, got ${
        inspect(actual)
      }`,
    );
  }
}

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

/** An error class, or the code of a {@linkcode TablerollError}. */
type Expected = ErrorClass<Error> | TablerollErrorCode;

/** What {@linkcode assertThrows} returns for `expected`. */
type Caught<X extends Expected> = X extends TablerollErrorCode ? TablerollError
  : X extends ErrorClass<infer E> ? E
  : never;

/**
 * Fails unless `fn` throws an instance of `expected` (or a
 * {@linkcode TablerollError} of that code); returns the error.
 */
export function assertThrows<X extends Expected>(
  fn: () => unknown,
  expected: X,
  messageIncludes?: string,
): Caught<X> {
  try {
    fn();
  } catch (err) {
    return checkError(err, expected, messageIncludes) as Caught<X>;
  }
  throw new AssertionError(
    `expected ${describeExpected(expected)} to be thrown, nothing was`,
  );
}

/**
 * Fails unless `promise` rejects with an instance of `expected` (or a
 * {@linkcode TablerollError} of that code); returns the error.
 */
export async function assertRejects<X extends Expected>(
  promise: Promise<unknown> | (() => Promise<unknown>),
  expected: X,
  messageIncludes?: string,
): Promise<Caught<X>> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    return checkError(err, expected, messageIncludes) as Caught<X>;
  }
  throw new AssertionError(
    `expected a rejection with ${describeExpected(expected)}, it resolved`,
  );
}

function describeExpected(expected: Expected): string {
  return typeof expected === "string"
    ? `TablerollError ${expected}`
    : expected.name;
}

function checkError(
  err: unknown,
  expected: Expected,
  includes?: string,
): Error {
  const matches = typeof expected === "string"
    ? err instanceof TablerollError && err.code === expected
    : err instanceof expected;
  if (!matches) {
    throw new AssertionError(
      `expected ${describeExpected(expected)}, got ${inspect(err)}`,
    );
  }
  const error = err as Error;
  if (includes && !error.message.includes(includes)) {
    throw new AssertionError(
      `expected message to include ${
        JSON.stringify(includes)
      }: ${error.message}`,
    );
  }
  return error;
}
