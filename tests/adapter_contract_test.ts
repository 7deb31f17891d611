/**
 * The one shape of `serve` on every entry point (the runtime's native
 * adapter, `node:http`, the runtime-neutral `serve`), with real servers on
 * each runtime: the same defaults (0.0.0.0 port 8000 whatever `$PORT` says,
 * the URL logged, a grace period of a second), the same handle (`address`,
 * `finished`, `stop()`, `await using`) on the runtime's own server object,
 * `onListen` with the real address, `path`, and a `signal` that stops the
 * server as `stop()` does. Each check runs in a process of its own
 * (`fixtures/contract_child.ts`).
 */
import { spawnSync } from "node:child_process";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { commandLine } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

/**
 * Why a child cannot get a network namespace of its own, or `undefined`:
 * the defaults are checked in one, where port 8000 is surely free.
 */
function noNetworkNamespace(): string | undefined {
  const probe = spawnSync(
    "unshare",
    ["--net", "ip", "link", "set", "lo", "up"],
    {
      encoding: "utf8",
    },
  );
  if (probe.status === 0) return undefined;
  return `no network namespace of its own (unshare --net, ip): ${
    probe.error?.message ?? probe.stderr.trim()
  }`;
}

/**
 * Runs check `check` against `entryPoint` in a child of this runtime,
 * in a network namespace of its own with `isolated`; fails with the
 * child's output, else returns its stdout.
 */
async function inChild(
  check: string,
  entryPoint: string,
  isolated = false,
): Promise<string> {
  const group = new ProcessGroup();
  try {
    const [command, args] = commandLine(
      runtime,
      "tests/fixtures/contract_child.ts",
      [check, entryPoint],
    );
    // Bun.serve's own default port would come from these.
    const env = { PORT: "3001", BUN_PORT: "3002", NODE_PORT: "3003" };
    const child = isolated
      ? group.spawn("unshare", [
        "--net",
        "sh",
        "-c",
        'ip link set lo up && exec "$@"',
        "sh",
        command,
        ...args,
      ], env)
      : group.spawn(command, args, env);
    const exit = await child.exited;
    assertEquals(exit.code, 0, child.stderrTail);
    return child.output;
  } finally {
    await group.close();
  }
}

const testNode = await nodeAdapterTest(runtime);
const isolation = noNetworkNamespace();

for (const entryPoint of [runtime, "node", "serve"]) {
  const it = entryPoint === "node" ? testNode : test;
  const on = `${entryPoint} on ${runtime}`;

  it(
    `contract: ${on} listens on 0.0.0.0:8000 by default whatever $PORT says, logs the URL, drains for a second`,
    async () => {
      const output = await inChild("defaults", entryPoint, true);
      assert(
        output.split("\n").includes("Listening on http://0.0.0.0:8000/"),
        output,
      );
    },
    { skip: isolation },
  );

  it(`contract: ${on} gives the handle and onListen the real address, and stop() drains gently`, async () => {
    await inChild("stop", entryPoint);
  });

  it(`contract: ${on} stops when its signal aborts, as with stop()`, async () => {
    await inChild("signal", entryPoint);
  });

  it(`contract: ${on} given an aborted signal serves, then stops`, async () => {
    await inChild("aborted", entryPoint);
  });

  it(`contract: ${on} stops at the end of an await using block`, async () => {
    await inChild("using", entryPoint);
  });

  it(`contract: ${on} listens on a Unix socket given as path`, async () => {
    await inChild("unix", entryPoint);
  });
}

test(
  "contract: Bun's using stops the Bun adapter's server and settles finished",
  async () => {
    await inChild("bun-using", "bun");
  },
  { skip: onlyUnder("bun", "the Bun adapter serves only under Bun") },
);
