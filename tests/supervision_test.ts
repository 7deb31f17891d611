/**
 * The library's own failures never end, wedge or mislead the service it
 * lives in: a logger or event listener that throws, an upgrader that cannot
 * be set up, a copy started by `upgrade()` that dies after taking over.
 */
import { join } from "node:path";
import { existsSync, readFileSync } from "node:fs";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { takenOver } from "./support/takeover.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { Upgrader } from "../mod.ts";
import { commandLine } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { TIMEOUT_MS } from "./fixtures/upgrader_peers.ts";
import { withDir, withPlace } from "./fixtures/places.ts";

const silent = { debug() {}, info() {}, warn() {}, error() {} };

/** A logger whose every method throws. */
const throwingLogger = {
  debug: () => {
    throw new Error("debug broke");
  },
  info: () => {
    throw new Error("info broke");
  },
  warn: () => {
    throw new Error("warn broke");
  },
  error: () => {
    throw new Error("error broke");
  },
};

test("supervision: a logger and an onEvent listener that throw change nothing", async () => {
  await withDir(async (dir) => {
    const options = {
      logger: throwingLogger,
      onEvent: () => {
        throw new Error("listener broke");
      },
    };
    const owner = await Upgrader.create(dir, { ...options, id: "a" });
    owner.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
    await owner.ready();
    assertEquals(owner.state, "owner");
    const successor = await Upgrader.create(dir, { ...options, id: "b" });
    assertEquals(successor.fds.list().map((d) => d.inherited), [true]);
    await successor.ready();
    await takenOver(owner);
    assertEquals([owner.state, successor.state], ["upgraded", "owner"]);
    await owner.stop();
    await successor.stop();
    // Descriptors are counted by the process tests (the exhaustion matrix):
    // here other test files share the process.
    for (const id of ["a", "b"]) {
      assert(!existsSync(join(dir, `${id}.sock`)), `${id}.sock removed`);
    }
  });
});

test("supervision: an unusable stderr hand-back is ignored with a warning; create() succeeds and stop() cleans up", async () => {
  await withDir(async (dir) => {
    // Set for copies started by upgrade(); a number that names no descriptor.
    process.env.TABLEROLL_UPGRADE_STDERR_FD = "987";
    const warnings: string[] = [];
    try {
      const upgrader = await Upgrader.create(dir, {
        id: "a",
        logger: { ...silent, warn: (m: string) => warnings.push(m) },
      });
      await upgrader.ready();
      await upgrader.stop();
    } finally {
      delete process.env.TABLEROLL_UPGRADE_STDERR_FD;
    }
    assert(
      warnings.some((w) => /TABLEROLL_UPGRADE_STDERR_FD=987/.test(w)),
      `warned: ${warnings.join("; ")}`,
    );
    assert(!existsSync(join(dir, "a.sock")), "the control socket is gone");
  });
});

test(
  `supervision (${runtime}): a copy started by upgrade() that dies within the rollback window is reaped`,
  () =>
    withPlace(async (place) => {
      const port = await freePort();
      const [command, args] = commandLine(runtime, "examples/hello.ts", [
        "--dir",
        place.dir,
        "--addr",
        `127.0.0.1:${port}`,
        "--rollback-window",
        "10000",
        "--upgrade-on-sighup",
      ]);
      const old = place.group.spawn(command, args);
      await old.waitForLine(new RegExp(`^READY ${old.pid}$`), TIMEOUT_MS);
      old.kill("SIGHUP");
      // The copy shares the old one's stdout.
      const ready = await old.waitForLine(
        new RegExp(`^READY (?!${old.pid}$)\\d+$`),
        TIMEOUT_MS,
      );
      const copy = Number(ready.text.split(" ")[1]);
      assertEquals(
        parentOf(copy),
        old.pid,
        "the copy is a child of the old one",
      );
      process.kill(copy, "SIGKILL");
      await old.waitForLine(/^ROLLED-BACK \d+$/, TIMEOUT_MS);
      await until(
        () => stateOf(copy) === null,
        `pid ${copy} reaped (state ${stateOf(copy)})`,
        TIMEOUT_MS, // before: a zombie for as long as this process ran
      );
    }),
  { timeout: 60_000 },
);

/** The state letter of process `pid` (`Z` for a zombie), or `null` if there is none. */
function stateOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
  } catch {
    return null;
  }
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}
