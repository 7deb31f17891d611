/**
 * Whether the `node:http` adapter serves on the runtime the tests spawn: it
 * needs a runtime whose `node:net` serves a socket given by descriptor (see
 * `NODE_ADAPTER_SINCE`), which a child process of that runtime tries.
 *
 * @module
 */
import { execFile } from "node:child_process";
import { commandLine } from "../../testing/copies.ts";
import { test } from "./harness.ts";

/**
 * Why the `node:http` adapter cannot serve on `runtime` as the tests spawn
 * it, or `undefined` if it can; the reason is printed, so that the tests it
 * skips say why.
 */
async function nodeAdapterProblem(
  runtime: "deno" | "bun",
): Promise<string | undefined> {
  const [command, args] = commandLine(
    runtime,
    "tests/fixtures/node_adapter_probe.ts",
    [],
  );
  const output = await new Promise<string>((resolve, reject) =>
    execFile(
      command,
      args,
      { timeout: 30_000 },
      (err, stdout) => err ? reject(err) : resolve(stdout.trim()),
    )
  );
  if (output === "ok") return undefined;
  return `the node:http adapter cannot serve on ${runtime}: ${output}`;
}

/**
 * {@linkcode test} for tests of the `node:http` adapter on `runtime`:
 * skipped where {@linkcode nodeAdapterProblem} finds that it cannot serve.
 */
export async function nodeAdapterTest(
  runtime: "deno" | "bun",
): Promise<typeof test> {
  const problem = await nodeAdapterProblem(runtime);
  return problem === undefined
    ? test
    : (name, fn, options) => test(name, fn, { ...options, skip: problem });
}
