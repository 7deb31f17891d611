/**
 * The few assertions the tests need (`@std/assert` is not reachable here).
 *
 * @module
 */
import { inspect, isDeepStrictEqual } from "node:util";

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

/** Fails unless `fn` throws an instance of `errorClass`; returns the error. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  errorClass: ErrorClass<E>,
  messageIncludes?: string,
): E {
  try {
    fn();
  } catch (err) {
    return checkError(err, errorClass, messageIncludes);
  }
  throw new AssertionError(
    `expected ${errorClass.name} to be thrown, nothing was`,
  );
}

/** Fails unless `promise` rejects with an instance of `errorClass`; returns the error. */
export async function assertRejects<E extends Error>(
  promise: Promise<unknown> | (() => Promise<unknown>),
  errorClass: ErrorClass<E>,
  messageIncludes?: string,
): Promise<E> {
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (err) {
    return checkError(err, errorClass, messageIncludes);
  }
  throw new AssertionError(
    `expected a rejection with ${errorClass.name}, it resolved`,
  );
}

function checkError<E extends Error>(
  err: unknown,
  errorClass: ErrorClass<E>,
  includes?: string,
): E {
  if (!(err instanceof errorClass)) {
    throw new AssertionError(
      `expected ${errorClass.name}, got ${inspect(err)}`,
    );
  }
  if (includes && !err.message.includes(includes)) {
    throw new AssertionError(
      `expected message to include ${JSON.stringify(includes)}: ${err.message}`,
    );
  }
  return err;
}
