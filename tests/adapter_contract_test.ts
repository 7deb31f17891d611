/**
 * The handle every adapter's server has (`address`, `finished`, `stop()`,
 * the disposers), and what is particular to the Bun adapter's server: Bun's
 * `using`, its class, its default port. Each check runs in a process of its
 * own (`fixtures/contract_child.ts`).
 */
import { runtime, test } from "./support/harness.ts";
import { assertEquals } from "./support/assert.ts";
import { commandLine } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

/** Runs `check` against `adapter` in a child of this runtime; fails with its output. */
async function inChild(
  check: string,
  adapter: string,
  env: Record<string, string> = {},
): Promise<void> {
  const group = new ProcessGroup();
  try {
    const child = group.spawn(
      ...commandLine(runtime, "tests/fixtures/contract_child.ts", [
        check,
        adapter,
      ]),
      env,
    );
    const exit = await child.exited;
    assertEquals(exit.code, 0, child.stderrTail);
  } finally {
    await group.close();
  }
}

const testNode = await nodeAdapterTest(runtime);
for (const adapter of [runtime, "node", "serve"]) {
  const it = adapter === "node" ? testNode : test;
  it(`contract: the ${adapter} adapter on ${runtime} reports its address, stops with stop(), settles finished`, () =>
    inChild("stop", adapter));

  it(`contract: the ${adapter} adapter on ${runtime} stops at the end of an await using block`, () =>
    inChild("using", adapter));
}

test(
  "contract: Bun's using stops the adapter's server and settles finished",
  () => inChild("bun-using", "bun"),
  { ignore: runtime !== "bun" },
);

test(
  "contract: Bun's adapter listens on $PORT when no port is given, as Bun.serve does",
  async () => inChild("bun-port", "bun", { PORT: String(await freePort()) }),
  { ignore: runtime !== "bun" },
);
