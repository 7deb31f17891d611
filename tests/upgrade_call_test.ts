/**
 * A self-upgrade's (`upgrade()`) refusals and its timeout, in this process, with a
 * stand-in command that never takes over (`argv`).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assertEquals, assertRejects } from "./support/assert.ts";
import { Upgrader } from "../mod.ts";
import { upgrade } from "../self_upgrade/mod.ts";

async function withUpgrader(
  body: (upgrader: Upgrader) => Promise<void>,
): Promise<void> {
  const tmp = mkdtempSync("/tmp/tr-");
  const dir = join(tmp, "c");
  mkdirSync(dir, { mode: 0o700 });
  const upgrader = await Upgrader.create(dir);
  try {
    await body(upgrader);
  } finally {
    await upgrader.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

test(`upgrade() (${runtime}): only the owner may start an upgrade`, () =>
  withUpgrader(async (upgrader) => {
    await assertRejects(upgrade(upgrader), "not-owner", "state starting");
    await upgrader.stop();
    await assertRejects(upgrade(upgrader), "not-owner", "state stopped");
  }));

test(`upgrade() (${runtime}): a second call while one runs is refused; a copy that never takes over is killed at the timeout`, () =>
  withUpgrader(async (upgrader) => {
    await upgrader.ready();
    const started = Date.now();
    const first = upgrade(upgrader, {
      argv: ["sleep", "30"],
      timeout: 500,
    });
    await assertRejects(upgrade(upgrader), "upgrade-in-progress");
    const err = await assertRejects(
      first,
      "timeout",
      "within 500 ms",
    );
    const elapsed = Date.now() - started;
    assertEquals(elapsed >= 500 && elapsed < 5000, true, `${elapsed} ms`);
    assertEquals(upgrader.state, "owner");
    // The pid in the message is the killed copy's: no zombie is left.
    const pid = Number(/pid (\d+)/.exec(err.message)![1]);
    assertEquals(existsSync(`/proc/${pid}`), false, `pid ${pid} is reaped`);
    // And the next call is accepted again.
    const failed = await assertRejects(
      upgrade(upgrader, { argv: ["sh", "-c", "echo no >&2; exit 4"] }),
      "successor-failed",
    );
    assertEquals(
      [failed.successor?.exitCode, failed.successor?.stderr],
      [4, "no"],
    );
  }));
