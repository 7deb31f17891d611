/**
 * The example service's command line: `--help` prints the usage and exits 0;
 * an unknown flag, or no `--dir`, prints the usage on stderr and exits 2,
 * without a stack trace.
 */
import { spawnSync } from "node:child_process";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { commandLine } from "../testing/copies.ts";

/** Runs examples/hello.ts with `args` under this suite's runtime. */
function hello(...args: string[]) {
  const [command, argv] = commandLine(runtime, "examples/hello.ts", args);
  const run = spawnSync(command, argv, { encoding: "utf8", timeout: 30_000 });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

test(`hello (${runtime}): --help prints the usage and exits 0`, () => {
  for (const flag of ["--help", "-h"]) {
    const { code, stdout, stderr } = hello(flag);
    assertEquals(code, 0, stderr);
    assert(stdout.startsWith("usage: hello.ts --dir DIR"), stdout);
    assert(stdout.includes("--rollback-window MS"), stdout);
  }
});

test(`hello (${runtime}): an unknown flag or no --dir prints the usage and exits 2`, () => {
  for (
    const [args, says] of [
      [["--bogus"], "Unknown option '--bogus'"],
      [["--addr", "127.0.0.1:1"], "usage: hello.ts"],
    ] as const
  ) {
    const { code, stdout, stderr } = hello(...args);
    assertEquals(code, 2, `${args.join(" ")}: ${stderr}`);
    assertEquals(stdout, "");
    assert(stderr.includes("usage: hello.ts --dir DIR"), stderr);
    assert(stderr.includes(says), stderr);
    assert(!/^\s+at /m.test(stderr), `a stack trace: ${stderr}`);
  }
});
