/**
 * The runtime versions tableroll is tested on, in one place: the version
 * matrix (`.ci/matrix`) runs on each of them, the README's table lists them,
 * and the native adapters name the range when adoption fails and warn once
 * on a runtime outside it.
 *
 * @module
 */

/** The runtimes tableroll runs on. */
export type RuntimeName = "deno" | "bun";

/**
 * Per runtime, oldest first: the oldest version everything works on, the
 * newest patch of each minor release after it, and the version the project
 * pins (its own tests run there).
 */
export const TESTED_VERSIONS: Readonly<Record<RuntimeName, readonly string[]>> =
  {
    deno: [
      "2.3.2",
      "2.3.7",
      "2.4.4",
      "2.5.7",
      "2.6.8",
      "2.7.14",
      "2.8.3",
      "2.9.6",
    ],
    bun: ["1.2.0", "1.2.23", "1.3.14", "1.4.5"],
  };

/**
 * The oldest version the `node:http` adapter serves on: its `node:net`
 * serves a socket given by descriptor (older ones fail, listen elsewhere, or
 * never see a connection), and on Bun `node:https` servers are a class of
 * their own (before 1.4.4 an HTTP server cannot be told from an HTTPS one).
 */
export const NODE_ADAPTER_SINCE: Readonly<Record<RuntimeName, string>> = {
  deno: "2.8.0",
  bun: "1.4.4",
};

const LABELS: Record<RuntimeName, string> = { deno: "Deno", bun: "Bun" };

/** The running runtime and its version, or `undefined` for another runtime. */
export function currentRuntime():
  | { name: RuntimeName; version: string }
  | undefined {
  const g = globalThis as {
    Deno?: { version: { deno: string } };
    Bun?: { version: string };
  };
  if (g.Deno) return { name: "deno", version: g.Deno.version.deno };
  if (g.Bun) return { name: "bun", version: g.Bun.version };
  return undefined;
}

/** `"Deno 2.9.6"`: `version` of `runtime`, for messages. */
export function versionName(runtime: RuntimeName, version: string): string {
  return `${LABELS[runtime]} ${version}`;
}

/** `"Deno 2.9.6"` or `"Bun 1.4.5"`: the running runtime, for messages. */
export function runtimeName(): string {
  const runtime = currentRuntime();
  return runtime
    ? versionName(runtime.name, runtime.version)
    : "an unknown runtime";
}

/** `"Deno 2.3.2 to 2.9.6"`: the tested range of `runtime`. */
export function testedRange(runtime: RuntimeName): string {
  const versions = TESTED_VERSIONS[runtime];
  return `${LABELS[runtime]} ${versions[0]} to ${versions.at(-1)}`;
}

/**
 * Where `version` of `runtime` lies against its tested range: older than
 * the oldest, within it, or newer than the newest; `undefined` if the
 * version cannot be read.
 *
 * @example
 * ```ts
 * import { placeInTestedRange } from "./tested_runtimes.ts";
 *
 * placeInTestedRange("deno", "1.46.3"); // "older"
 * ```
 */
export function placeInTestedRange(
  runtime: RuntimeName,
  version: string,
): "older" | "tested" | "newer" | undefined {
  const parts = numbers(version);
  if (!parts) return undefined;
  const versions = TESTED_VERSIONS[runtime];
  if (compare(parts, numbers(versions[0])!) < 0) return "older";
  if (compare(parts, numbers(versions.at(-1)!)!) > 0) return "newer";
  return "tested";
}

/**
 * What to tell the user of `version` of `runtime` outside the tested range
 * before relying on its internals, or `undefined` within it.
 */
export function untestedVersionWarning(
  runtime: RuntimeName,
  version: string,
): string | undefined {
  const place = placeInTestedRange(runtime, version);
  if (place !== "older" && place !== "newer") return undefined;
  return `tableroll: ${versionName(runtime, version)} is ${place} than ` +
    `every version tableroll was tested on (${testedRange(runtime)}): the ` +
    "native adapter checks the runtime internals it relies on before " +
    "serving, but test your handovers on this version";
}

/** `[2, 9, 6]` from `"2.9.6"` (or `"2.9.6+abc"`, `"1.4.5-canary…"`). */
function numbers(version: string): number[] | undefined {
  const match = version.match(/^(\d+)\.(\d+)\.(\d+)/);
  return match ? match.slice(1).map(Number) : undefined;
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}
