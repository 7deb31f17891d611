/**
 * The ways the bench runs the example service and its baseline, the plain
 * server: from source under each runtime, and, with Bun, built with
 * `bun build` in the ways users ship it.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import {
  type Copy,
  ROOT,
  type Runtime,
  runtimeBinary,
  type ServiceFlags,
  startBuiltCopy,
  startCopy,
} from "../testing/copies.ts";
import type { ProcessGroup } from "../testing/processes.ts";

/** The plain native server with the example's handler and flags, no upgrader. */
export const PLAIN_SERVER = "bench/fixtures/plain_server.ts";

/** One way of running the example and, as its baseline, the plain server. */
export interface Flavour {
  /** The table's name for it: the runtime, or the build command. */
  label: string;
  /** Starts the plain server; none for a reference implementation. */
  plain?: (group: ProcessGroup, flags: ServiceFlags) => Copy;
  /** Starts the example. */
  example: (group: ProcessGroup, flags: ServiceFlags) => Copy;
}

/**
 * The Bun builds: one bundle (as the npm package ships the library), a
 * single binary, and one with the code shipped parsed and compiled.
 * Bytecode of an ES module (top-level await) needs the ESM output.
 */
const BUN_BUILDS = [
  ["--target=bun"],
  ["--compile"],
  ["--compile", "--bytecode", "--format=esm"],
];

/**
 * Each runtime from source, then, if Bun is among them, each of
 * {@linkcode BUN_BUILDS}, built into `buildDir`.
 */
export function flavours(runtimes: Runtime[], buildDir: string): Flavour[] {
  const list: Flavour[] = runtimes.map((runtime) => ({
    label: runtime,
    plain: runtime === "reference"
      ? undefined
      : (group, flags) => startCopy(group, runtime, flags, PLAIN_SERVER),
    example: (group, flags) => startCopy(group, runtime, flags),
  }));
  if (!runtimes.includes("bun")) return list;
  for (const [i, options] of BUN_BUILDS.entries()) {
    const plain = bunBuild(PLAIN_SERVER, `${buildDir}/plain-${i}`, options);
    const example = bunBuild(
      "examples/hello.ts",
      `${buildDir}/hello-${i}`,
      options,
    );
    list.push({
      label: `bun build ${options.join(" ")}`,
      plain: (group, flags) => startBuiltCopy(group, plain, flags),
      example: (group, flags) => startBuiltCopy(group, example, flags),
    });
  }
  return list;
}

/** Builds `script` with `bun build` and `options` into `out`; returns the command that runs it. */
export function bunBuild(
  script: string,
  out: string,
  options: string[],
): string[] {
  const compiled = options.includes("--compile");
  const file = compiled ? out : `${out}.js`;
  const build = spawnSync(runtimeBinary("bun"), [
    "build",
    ...options,
    ROOT + script,
    "--outfile",
    file,
  ], { encoding: "utf8" });
  if (build.status !== 0) {
    throw new Error(`bun build ${script} failed: ${build.stderr}`);
  }
  return compiled ? [file] : [runtimeBinary("bun"), file];
}
