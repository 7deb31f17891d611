/**
 * Which files a program really opens as it runs, seen by `strace`: what a
 * runtime reads, not what a static import graph says it might.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const TIMEOUT_MS = 60_000;

/**
 * Runs `command` in `cwd` under `strace -f` and returns the canonical paths
 * of everything its threads and children opened successfully, in the order
 * of the trace, each once. Throws if strace is missing or `command` fails.
 */
export function openedFiles(command: string[], cwd: string): string[] {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-bench-trace-"));
  const trace = join(dir, "trace");
  try {
    const run = spawnSync("strace", [
      "-f",
      "-qq",
      // Each returned descriptor with the canonical path it stands for:
      // no relative paths or descriptors to resolve afterwards.
      "-y",
      "-e",
      "trace=open,openat,openat2",
      "-e",
      "status=successful",
      "-o",
      trace,
      "--",
      ...command,
    ], { cwd, encoding: "utf8", timeout: TIMEOUT_MS });
    if (run.error) {
      throw new Error(
        `cannot run strace (apt-get install strace): ${run.error.message}`,
      );
    }
    if (run.status !== 0) {
      throw new Error(
        `${command.join(" ")} failed under strace (${
          run.signal ?? `status ${run.status}`
        }): ${run.stderr.trim()}`,
      );
    }
    return parseTrace(readFileSync(trace, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The paths in a trace's lines, `… = 5</path>`; a call interrupted by
 * another thread's carries its result on its `<... openat resumed>` line.
 */
function parseTrace(trace: string): string[] {
  const paths = new Set<string>();
  for (const line of trace.split("\n")) {
    const opened = / = \d+<(.+)>$/.exec(line);
    if (opened) paths.add(opened[1]);
  }
  return [...paths];
}
