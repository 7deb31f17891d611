/**
 * Copies of the example service (`examples/hello.ts`) or of a reference
 * implementation taking the same flags, started as independent processes
 * that share only the coordination directory.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Child, Line, ProcessGroup } from "./processes.ts";

/** What runs a copy: the example under Deno or Bun, or the reference binary. */
export type Runtime = "deno" | "bun" | "reference";

/** Which runtime runs copy number `i` (0 is the first) of a rolling upgrade. */
export type Lineup = (i: number) => Runtime;

/**
 * The lineups by name: one runtime throughout, Deno and Bun in turn, or the
 * reference implementation, Deno and Bun in turn (`interop`).
 */
export const LINEUPS: Record<string, Lineup> = {
  deno: () => "deno",
  bun: () => "bun",
  mixed: (i) => (i % 2 === 0 ? "deno" : "bun"),
  reference: () => "reference",
  interop: (i) => (["reference", "deno", "bun"] as const)[i % 3],
};

/** The environment variable naming a reference binary that takes hello.ts's flags. */
export const REFERENCE_ENV = "TABLEROLL_REFERENCE_BIN";

/** The repository root, for the pinned binaries and the example. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));

/**
 * The environment variables that replace the pinned runtime binaries
 * (an emulated aarch64 build, say) for everything tests and benchmarks spawn.
 */
export const RUNTIME_ENV = { deno: "TABLEROLL_DENO", bun: "TABLEROLL_BUN" };

/**
 * Path of the runtime binary that runs child processes: the one
 * {@linkcode RUNTIME_ENV} names, or else the pinned one installed by `npm ci`.
 */
export function runtimeBinary(runtime: "deno" | "bun"): string {
  return process.env[RUNTIME_ENV[runtime]] ||
    `${ROOT}node_modules/.bin/${runtime}`;
}

/**
 * The command line that runs `script` (a path below the repository root)
 * under `runtime`, with its {@linkcode runtimeBinary} or `binary` (another
 * version, say); for `"reference"` the script is ignored and the binary
 * named by {@linkcode REFERENCE_ENV} runs instead.
 */
export function commandLine(
  runtime: Runtime,
  script: string,
  args: string[],
  binary?: string,
): [string, string[]] {
  switch (runtime) {
    case "deno":
      return [
        binary ?? runtimeBinary("deno"),
        ["run", "-A", ROOT + script, ...args],
      ];
    case "bun":
      return [binary ?? runtimeBinary("bun"), [ROOT + script, ...args]];
    case "reference": {
      const binary = process.env[REFERENCE_ENV];
      if (!binary) throw new Error(`${REFERENCE_ENV} is not set`);
      return [binary, args];
    }
  }
}

/**
 * Builds `examples/hello.ts` into the single binary `out` with
 * `bun build --compile`, its answers naming `version` (`HELLO_VERSION`);
 * throws with Bun's output if the build fails.
 */
export function buildHello(version: string, out: string): void {
  const result = spawnSync(runtimeBinary("bun"), [
    "build",
    "--compile",
    "--define",
    `HELLO_VERSION="${version}"`,
    "examples/hello.ts",
    "--outfile",
    out,
  ], { cwd: ROOT, encoding: "utf8" });
  if (result.status !== 0) {
    throw new Error(`bun build --compile failed: ${result.stderr}`);
  }
}

/** The flags every copy of one service shares. */
export interface ServiceFlags {
  /** Coordination directory (`--dir`). */
  dir: string;
  /** Service name (`--name`). */
  name: string;
  /** `HOST:PORT` to serve on (`--addr`). */
  addr: string;
  /** Response delay in milliseconds (`--delay`). */
  delay: number;
  /** Rollback window in milliseconds (`--rollback-window`); absent: none. */
  rollbackWindow?: number;
}

/** A running copy of the service. */
export interface Copy {
  /** The process. */
  child: Child;
  /** What runs it. */
  runtime: Runtime;
  /** Resolves when it printed `READY <pid>`: it owns the sockets. */
  ready(timeoutMs: number): Promise<Line>;
  /** Resolves when it printed `DRAINED <pid>`: its in-flight requests are done. */
  drained(timeoutMs: number): Promise<Line>;
  /** Resolves when it printed `ROLLED-BACK <pid>` (also earlier): it serves again. */
  rolledBack(timeoutMs: number): Promise<Line>;
}

/**
 * Starts one copy of the example service (or the reference) in `group`;
 * `script` replaces the example by another program taking the same flags,
 * `binary` the runtime's binary (see {@linkcode commandLine}).
 */
export function startCopy(
  group: ProcessGroup,
  runtime: Runtime,
  flags: ServiceFlags,
  script = "examples/hello.ts",
  binary?: string,
): Copy {
  const [command, args] = commandLine(
    runtime,
    script,
    serviceArgs(flags),
    binary,
  );
  return copyOf(group.spawn(command, args), runtime);
}

/**
 * Starts one copy of a build of the example (or of another program taking
 * its flags) made with `bun build`: `command` is the compiled binary, or
 * `bun` and the bundle.
 */
export function startBuiltCopy(
  group: ProcessGroup,
  [program, ...args]: string[],
  flags: ServiceFlags,
): Copy {
  return copyOf(group.spawn(program, [...args, ...serviceArgs(flags)]), "bun");
}

function serviceArgs(flags: ServiceFlags): string[] {
  return [
    "--dir",
    flags.dir,
    "--name",
    flags.name,
    "--addr",
    flags.addr,
    "--delay",
    String(flags.delay),
    ...(flags.rollbackWindow
      ? ["--rollback-window", String(flags.rollbackWindow)]
      : []),
  ];
}

function copyOf(child: Child, runtime: Runtime): Copy {
  return {
    child,
    runtime,
    // The pid printed is the one that answers requests; a reference binary
    // started through a wrapper may differ from the spawned pid.
    ready: (ms) => child.waitForLine(/^READY \d+$/, ms),
    drained: (ms) => child.waitForLine(/^DRAINED \d+$/, ms),
    rolledBack: (ms) => child.waitForLine(/^ROLLED-BACK \d+$/, ms),
  };
}
