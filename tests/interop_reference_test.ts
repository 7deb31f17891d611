/**
 * Interoperability with another implementation of the protocol, Go
 * tableroll in particular: given a binary that takes `examples/hello.ts`'s
 * flags in `TABLEROLL_REFERENCE_BIN`, the demo cycles the reference, Deno
 * and Bun copies through one coordination directory under load. Without the
 * variable there is nothing to run it against and the test is skipped.
 */
import { spawn } from "node:child_process";
import { onlyUnder, test } from "./support/harness.ts";
import { withReference } from "./support/requirements.ts";
import { assertEquals } from "./support/assert.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";

test(
  "interop: reference, Deno and Bun copies take over from one another under load",
  async () => {
    const demo = spawn(
      runtimeBinary("deno"),
      [
        "run",
        "-A",
        "examples/demo.ts",
        "--runtime",
        "interop",
        "--upgrades",
        "6",
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] },
    );
    let output = "";
    demo.stdout!.on("data", (chunk) => output += chunk);
    const code = await new Promise<number | null>((resolve) =>
      demo.on("close", resolve)
    );
    assertEquals(
      [code, /failed 0/.test(output)],
      [0, true],
      output.slice(-2000),
    );
  },
  {
    skip: withReference ??
      onlyUnder("deno", "the demo runs its copies under both runtimes itself"),
    timeout: 120_000,
  },
);
