/**
 * What a test needs of this machine or of the user running the suite, as the
 * reason to skip it (the harness's `skip` option), `undefined` when it is
 * there.
 *
 * @module
 */
import process from "node:process";
import { REFERENCE_ENV } from "../../testing/copies.ts";

/** Unless this process runs as root: why the test needs it (`what` it does as root). */
export function asRoot(what: string): string | undefined {
  const uid = process.getuid!();
  if (uid === 0) return undefined;
  return `needs root to ${what}; running as uid ${uid}`;
}

/** Unless {@linkcode REFERENCE_ENV} names a binary to test against. */
export const withReference: string | undefined = process.env[REFERENCE_ENV]
  ? undefined
  : `needs ${REFERENCE_ENV}: a reference binary (Go tableroll) taking examples/hello.ts's flags`;
