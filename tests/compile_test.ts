/**
 * A `bun build --compile` single binary of the example, built from its one
 * entry point, hands over to a second copy of itself; so does one built with
 * `--bytecode` (shipped parsed and compiled, which starts faster).
 * The binary embeds Bun, so this runs once, in the Bun suite.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { onlyUnder, test } from "./support/harness.ts";
import { assertEquals } from "./support/assert.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";

for (
  const options of [["--compile"], ["--compile", "--bytecode", "--format=esm"]]
) {
  test(
    `compile: a bun build ${
      options.join(" ")
    } binary hands over to a second copy`,
    async () => {
      const tmp = mkdtempSync("/tmp/tr-");
      const group = new ProcessGroup();
      try {
        const binary = `${tmp}/hello`;
        const build = spawnSync(runtimeBinary("bun"), [
          "build",
          ...options,
          "examples/hello.ts",
          "--outfile",
          binary,
        ], { cwd: ROOT, encoding: "utf8" });
        assertEquals(build.status, 0, build.stderr);

        const port = await freePort();
        const flags = ["--dir", `${tmp}/dir`, "--addr", `127.0.0.1:${port}`];
        const first = group.spawn(binary, flags);
        await first.waitForLine(/^READY \d+$/, 20_000);
        assertEquals(await hello(port), first.pid);
        const second = group.spawn(binary, flags);
        await second.waitForLine(/^READY \d+$/, 20_000);
        await first.waitForLine(/^DRAINED \d+$/, 20_000);
        assertEquals((await first.exited).code, 0);
        assertEquals(await hello(port), second.pid);
      } finally {
        await group.close();
        rmSync(tmp, { recursive: true, force: true });
      }
    },
    {
      skip: onlyUnder(
        "bun",
        "the binary embeds Bun whatever runs the suite: once is enough",
      ),
    },
  );
}

async function hello(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/`)).text();
  return Number(/^hello from (\d+)/.exec(text)?.[1]);
}
