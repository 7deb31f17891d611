/**
 * Socket activation with systemd's own `systemd-socket-activate` (Debian
 * package `systemd`, installed here if missing): the activated process takes
 * the named socket from `LISTEN_FDS`, removes the variables, serves, and the
 * socket then goes down a chain of handovers like any other. And the
 * environment as `sd_listen_fds(3)` leaves it, in this process.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import process from "node:process";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";

import { takeActivatedFds } from "../systemd/activation.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { ask, Peer } from "./fixtures/upgrader_peers.ts";

const HANDOVERS = 5;

/** Installs the `systemd` package unless `systemd-socket-activate` is there. */
function ensureSocketActivate(): void {
  const has = () =>
    spawnSync("sh", ["-c", "command -v systemd-socket-activate"]).status === 0;
  if (has()) return;
  spawnSync("sh", [
    "-c",
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd",
  ], { stdio: "inherit" });
  assert(
    has(),
    "systemd-socket-activate is missing and could not be installed",
  );
}

async function withDir(
  body: (group: ProcessGroup, tmp: string, dir: string) => Promise<void>,
): Promise<void> {
  ensureSocketActivate();
  const tmp = mkdtempSync("/tmp/tr-");
  const dir = join(tmp, "c");
  mkdirSync(dir, { mode: 0o700 });
  const group = new ProcessGroup();
  try {
    await body(group, tmp, dir);
  } finally {
    await group.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

for (const kind of ["tcp", "unix"] as const) {
  test(
    `activation (${runtime}): a ${kind} socket from systemd-socket-activate --fdname, then ${HANDOVERS} handovers`,
    () =>
      withDir(async (group, tmp, dir) => {
        const path = join(tmp, "web.sock");
        const port = await freePort();
        const listen = kind === "tcp" ? `127.0.0.1:${port}` : path;
        const target = kind === "tcp" ? { host: "127.0.0.1", port } : { path };
        const args = ["--dir", dir, "--fd", `web=${kind}:${listen}`, "--serve"];
        const first = new Peer(group, runtime, args, [
          "systemd-socket-activate",
          "-l",
          listen,
          "--fdname=web",
        ]);
        // It starts the program at the first connection, in its own place.
        await new Promise((resolve) => setTimeout(resolve, 300));
        assertEquals(await ask(target), first.pid);
        const { descriptors } = await first.event("created");
        assertEquals(descriptors, [{
          name: "web",
          kind: "listener",
          addr: listen,
          inherited: true,
        }]);
        assertEquals((await first.event("environment")).listen, []);
        await first.event("ready");
        let current = first;
        for (let i = 1; i <= HANDOVERS; i++) {
          const next = new Peer(group, runtime, args);
          assertEquals((await next.event("created")).descriptors, descriptors);
          await next.event("ready");
          await current.gone();
          assertEquals(await ask(target), next.pid, `after handover ${i}`);
          current = next;
        }
      }),
    { timeout: 90_000 },
  );
}

test(`activation (${runtime}): an activated socket at another address is refused as a descriptor mismatch`, () =>
  withDir(async (group, _tmp, dir) => {
    const port = await freePort();
    const other = await freePort();
    const peer = new Peer(group, runtime, [
      "--dir",
      dir,
      "--fd",
      `web=tcp:127.0.0.1:${other}`,
    ], ["systemd-socket-activate", "-l", `127.0.0.1:${port}`, "--fdname=web"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await ask({ host: "127.0.0.1", port }).catch(() => {});
    const exit = await peer.child.exited;
    assert(exit.code !== 0, "the peer failed");
    assert(
      peer.child.stderrTail.includes("the predecessor listened elsewhere"),
      peer.child.stderrTail,
    );
  }));

/**
 * Runs `tests/fixtures/activation_env.ts` under `systemd-socket-activate`
 * with the runtime's arguments `runtimeArgs` and returns what it printed.
 */
async function activatedEnvironment(
  runtimeArgs: string[],
): Promise<{ first: string[]; second: string[]; env: string[] }> {
  let printed = "";
  await withDir(async (group, _tmp, dir) => {
    const port = await freePort();
    const child = group.spawn("systemd-socket-activate", [
      "-l",
      `127.0.0.1:${port}`,
      "--fdname=web",
      runtimeBinary(runtime),
      ...runtimeArgs,
      `${ROOT}tests/fixtures/activation_env.ts`,
      dir,
    ]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await ask({ host: "127.0.0.1", port }).catch(() => {});
    printed = (await child.waitForLine(/^\{/, 20_000)).text;
  });
  return JSON.parse(printed);
}

test(`activation (${runtime}): the variables are removed through the runtime, and the sockets taken once`, async () => {
  const args = runtime === "deno" ? ["run", "--allow-ffi", "--allow-env"] : [];
  assertEquals(await activatedEnvironment(args), {
    first: ["web"],
    second: [],
    env: [],
  });
});

test(
  "activation (deno): without --allow-env the variables stay, and the sockets are still taken once",
  async () => {
    assertEquals(await activatedEnvironment(["run", "--allow-ffi"]), {
      first: ["web"],
      second: [],
      env: ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"],
    });
  },
  { skip: onlyUnder("deno", "--allow-env is a Deno permission") },
);

const VARIABLES = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/** Sets the activation variables, runs `takeActivatedFds`, and checks that they are gone. */
function takeWith(
  env: Record<string, string>,
): ReturnType<typeof takeActivatedFds> {
  Object.assign(process.env, env);
  try {
    return takeActivatedFds();
  } finally {
    assertEquals(
      VARIABLES.filter((name) => process.env[name] !== undefined),
      [],
      "the variables are removed in every case",
    );
  }
}

test(`activation (${runtime}): variables meant for another process are removed and ignored`, () => {
  assertEquals(
    takeWith({ LISTEN_PID: String(process.pid + 1), LISTEN_FDS: "1" }),
    [],
  );
  assertEquals(takeWith({}), []);
});

test(`activation (${runtime}): contradicting variables are an ActivationError`, () => {
  const pid = String(process.pid);
  for (
    const [env, message] of [
      [{ LISTEN_FDS: "two" }, "LISTEN_FDS=two is not a number"],
      [
        { LISTEN_FDS: "2", LISTEN_FDNAMES: "web" },
        "LISTEN_FDNAMES names 1 descriptors but LISTEN_FDS passes 2",
      ],
      [
        { LISTEN_FDS: "2", LISTEN_FDNAMES: "web:web" },
        'two activated descriptors are named "web"',
      ],
    ] as const
  ) {
    assertThrows(
      () => takeWith({ LISTEN_PID: pid, ...env }),
      "activation",
      message,
    );
  }
});
