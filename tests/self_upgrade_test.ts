/**
 * Self-upgrade: `SIGHUP` makes the owner start a new copy of its own program
 * (`upgrader.upgrade()`), which takes over with no failed request. The
 * copies run below `fixtures/subreaper.ts`, which reaps them as a service
 * manager would and reports every exit status.
 */
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { type Child, ProcessGroup } from "../testing/processes.ts";
import { buildHello, commandLine } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { bodyFrom, startLoad } from "../testing/load.ts";
import { ask } from "./fixtures/upgrader_peers.ts";
import {
  exits,
  killAll,
  withUpgradablePeer,
} from "./fixtures/upgradable_peer.ts";

const UPGRADES = 20;

/** The pids of every `READY <pid>` line so far, in order. */
function readyPids(child: Child): number[] {
  return [...child.output.matchAll(/^READY (\d+)$/gm)].map((m) => Number(m[1]));
}

/** The processes whose parent is `pid`, with their state letter. */
function childrenOf(pid: number): { pid: number; state: string }[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).flatMap((n) => {
    try {
      const stat = readFileSync(`/proc/${n}/stat`, "utf8");
      const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return Number(ppid) === pid ? [{ pid: Number(n), state }] : [];
    } catch {
      return [];
    }
  });
}

/**
 * Runs `command` (hello.ts flags appended) below the subreaper, upgrades it
 * `UPGRADES` times with SIGHUP under keep-alive and new-connection load,
 * calling `beforeUpgrade(i)` first; checks every request, every exit status,
 * the process tree and the PID file.
 */
async function sighupUpgrades(
  command: string[],
  beforeUpgrade: (i: number) => string | undefined = () => undefined,
): Promise<void> {
  const tmp = mkdtempSync("/tmp/tr-");
  const group = new ProcessGroup();
  const pidFile = join(tmp, "hello.pid");
  const port = await freePort();
  const supervisor = group.spawn(...commandLine(
    runtime,
    "tests/fixtures/subreaper.ts",
    [
      ...command,
      "--dir",
      join(tmp, "dir"),
      "--addr",
      `127.0.0.1:${port}`,
      "--pid-file",
      pidFile,
      "--upgrade-on-sighup",
    ],
  ));
  try {
    let current = await until(() => readyPids(supervisor)[0], "first READY");
    const load = startLoad({
      hostname: "127.0.0.1",
      port,
      keepAliveClients: 2,
      newConnectionClients: 2,
      rate: 200,
      maxRequests: 20_000,
    });
    const served = (pid: number) =>
      load.samples.filter((s) => s.pid === pid).length;
    try {
      for (let i = 1; i <= UPGRADES; i++) {
        await until(() => served(current) >= 3, `requests to ${current}`);
        const version = beforeUpgrade(i);
        process.kill(current, "SIGHUP");
        const next = await until(
          () => readyPids(supervisor)[i],
          `READY after SIGHUP ${i}`,
        );
        assert(next !== current, `upgrade ${i} started a new process`);
        assertEquals(readFileSync(pidFile, "utf8"), `${next}\n`);
        if (version) {
          const text = await bodyFrom(port, next);
          assert(
            text.includes(`(version ${version})`),
            `upgrade ${i} serves version ${version}: ${text}`,
          );
        }
        // Old copies drain meanwhile: never more than a few at once.
        assert(childrenOf(supervisor.pid).length <= 3, "the tree stays small");
        current = next;
      }
      await until(() => served(current) >= 3, `requests to ${current}`);
    } finally {
      await load.stop();
    }
    const failed = load.samples.filter((s) => s.error);
    assertEquals(failed.slice(0, 3), [], `${failed.length} failed requests`);
    const pids = readyPids(supervisor);
    assertEquals(pids.length, UPGRADES + 1);
    const statuses = await until(() => {
      const seen = exits(supervisor);
      return pids.slice(0, -1).every((pid) => seen.has(pid)) && seen;
    }, "every old copy exited");
    for (const pid of pids.slice(0, -1)) {
      assertEquals(statuses.get(pid), "0", `exit status of ${pid}`);
    }
    // Only the last copy is left, and it is no zombie.
    const left = childrenOf(supervisor.pid);
    assertEquals(left.map((c) => c.pid), [current]);
    assert(left[0].state !== "Z", `${current} is a zombie`);
  } finally {
    killAll(readyPids(supervisor).filter((pid) => !exits(supervisor).has(pid)));
    await group.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

test(
  `self-upgrade (${runtime}): ${UPGRADES} SIGHUP upgrades of examples/hello.ts under load`,
  () =>
    sighupUpgrades(
      commandLine(runtime, "examples/hello.ts", [])
        .flat() as string[],
    ),
  { timeout: 120_000 },
);

test(
  `self-upgrade: ${UPGRADES} SIGHUP upgrades of a bun build --compile binary replaced on disk each time`,
  async () => {
    const tmp = mkdtempSync("/tmp/tr-");
    try {
      const binary = join(tmp, "hello");
      buildHello("a", binary);
      buildHello("b", join(tmp, "hello-b"));
      buildHello("a", join(tmp, "hello-a"));
      await sighupUpgrades([binary], (i) => {
        // Replace the program the way a deployment does: a new file renamed
        // over the old one, whose inode the running copy keeps.
        const version = i % 2 === 1 ? "b" : "a";
        const copy = join(tmp, `next-${i}`);
        writeFileSync(copy, readFileSync(join(tmp, `hello-${version}`)), {
          mode: 0o755,
        });
        renameSync(copy, binary);
        return version;
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  },
  {
    skip: onlyUnder(
      "bun",
      "the binary embeds Bun whatever runs the suite: once is enough",
    ),
    timeout: 180_000,
  },
);

test(
  `self-upgrade (${runtime}): failing successors leave the owner serving, then a SIGHUP works`,
  () =>
    withUpgradablePeer(
      async ({ supervisor, port, behave, eventFrom, firstPid }) => {
        const owner = firstPid;
        const attempt = async (what: string) => {
          behave(what);
          const before = exits(supervisor).size;
          process.kill(owner, "SIGUSR1");
          const outcome = await until(
            () => {
              const all = supervisor.output.split("\n").filter((l) =>
                l.startsWith('{"event":"upgrade"')
              ).map((l) => JSON.parse(l));
              return all.length > attempts ? all[attempts] : undefined;
            },
            `outcome of the ${what} upgrade`,
          );
          attempts++;
          // The failed copy was reaped (by its parent, the owner): no new exit here.
          assertEquals(exits(supervisor).size, before);
          assertEquals(await ask({ host: "127.0.0.1", port }), owner);
          assertEquals(childrenOf(supervisor.pid).map((c) => c.pid), [owner]);
          assertEquals(childrenOf(owner), [], "no zombie below the owner");
          return outcome;
        };
        let attempts = 0;

        const exited = await attempt("exit");
        assertEquals(exited.error, "successor-failed");
        assert(exited.message.includes("exited with status 7"), exited.message);
        assert(exited.message.includes("this build is broken"), exited.message);

        const hung = await attempt("hang");
        assertEquals(hung.error, "timeout");
        assert(hung.message.includes("within 3000 ms"), hung.message);

        const died = await attempt("die");
        assertEquals(died.error, "successor-failed");
        assert(died.message.includes("killed by signal 9"), died.message);

        // A second SIGHUP while one runs is ignored and logged. It is sent
        // once the first was handled (pending signals coalesce), and the
        // copy takes a second to be ready.
        behave("slow");
        process.kill(owner, "SIGHUP");
        await eventFrom(owner, "log", /SIGHUP: upgrading/);
        process.kill(owner, "SIGHUP");
        await eventFrom(
          owner,
          "log",
          /SIGHUP ignored: an upgrade is already running/,
        );
        await eventFrom(owner, "upgraded");
        const next = await until(
          () =>
            supervisor.output.split("\n")
              .filter((l) => l.startsWith('{"event":"ready"'))
              .map((l) => JSON.parse(l).pid as number)
              .find((pid) => pid !== owner),
          "the new owner",
        );
        await until(() => exits(supervisor).get(owner), "the old owner's exit");
        assertEquals(exits(supervisor).get(owner), "0");
        assertEquals(await ask({ host: "127.0.0.1", port }), next);
      },
    ),
  { timeout: 90_000 },
);
