/**
 * `tableroll upgrade` against real owners: one that upgrades itself on
 * SIGHUP (below the subreaper, its copies told how to behave), one that
 * does not, and none.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { withPlace } from "./fixtures/place.ts";
import { ask, Peer } from "./fixtures/upgrader_peers.ts";
import { withUpgradablePeer } from "./fixtures/upgradable_peer.ts";
import { runCli } from "./fixtures/cli_run.ts";
import { decodeUpgradeMarker } from "../self_upgrade/marker.ts";

test(
  "cli upgrade: a failing copy exits 1 with its reason, a hung one times out with 4, a good one exits 0 with both pids",
  () =>
    withUpgradablePeer(async ({ dir, port, behave, firstPid }) => {
      const marker = () =>
        decodeUpgradeMarker(
          readFileSync(join(dir, `${firstPid}.self-upgrade`), "utf8"),
        );
      const status = await runCli(runtime, ["status", dir, "--json"]);
      assertEquals(JSON.parse(status.stdout).selfUpgrade, {
        enabled: true,
        why: null,
        signal: "SIGHUP",
        started: 0,
        failed: 0,
        lastFailure: null,
      });

      behave("exit");
      const failed = await runCli(runtime, ["upgrade", dir]);
      assertEquals(failed.code, 1, failed.stderr);
      assert(/exited with status 7/.test(failed.stderr), failed.stderr);
      assert(/this build is broken/.test(failed.stderr), failed.stderr);
      assertEquals(await ask({ host: "127.0.0.1", port }), firstPid);

      // The owner gives a copy 3 s (--upgrade-timeout 3000); the command waits 1 s.
      behave("hang");
      const hung = await runCli(runtime, ["upgrade", dir, "--timeout", "1"]);
      assertEquals(hung.code, 4, hung.stderr);
      assert(/no new owner within 1\.0 s/.test(hung.stderr), hung.stderr);
      assert(hung.ms < 10_000, `the timeout took ${hung.ms} ms`);
      await until(() => marker()?.failed === 2, "the hung copy's failure");
      assertEquals(marker()?.started, 2);

      behave("ok");
      const done = await runCli(runtime, ["upgrade", dir, "--json"]);
      assertEquals(done.code, 0, done.stderr);
      const outcome = JSON.parse(done.stdout);
      assertEquals([outcome.result, outcome.oldPid], ["upgraded", firstPid]);
      assert(
        outcome.newPid !== firstPid && outcome.durationMs > 0,
        done.stdout,
      );
      assertEquals(await ask({ host: "127.0.0.1", port }), outcome.newPid);
      const after = JSON.parse(
        (await runCli(runtime, ["status", dir, "--json"])).stdout,
      );
      assertEquals(after.owner.pids, [outcome.newPid]);
      const text = await runCli(runtime, ["upgrade", dir]);
      assertEquals(text.code, 0, text.stderr);
      assert(
        new RegExp(`^upgraded: pid ${outcome.newPid} -> pid \\d+ in `).test(
          text.stdout,
        ),
        text.stdout,
      );
    }),
  { timeout: 120_000 },
);

test("cli upgrade: no owner exits 3; an owner without self-upgrade exits 5 and gets no signal", () =>
  withPlace(async (place) => {
    const empty = await runCli(runtime, ["upgrade", place.dir]);
    assertEquals(empty.code, 3);
    assert(/no live owner/.test(empty.stderr), empty.stderr);

    const owner = new Peer(place.group, runtime, ["--dir", place.dir]);
    await owner.event("ready");
    const refused = await runCli(runtime, ["upgrade", place.dir]);
    assertEquals(refused.code, 5);
    assert(
      /has not enabled self-upgrade: it advertises no self-upgrade marker/
        .test(refused.stderr),
      refused.stderr,
    );
    // SIGHUP would have ended it: it is still there and still the owner.
    assertEquals((await owner.fds()).state, "owner");
    const bad = await runCli(runtime, ["upgrade", place.dir, "--timeout", "x"]);
    assertEquals(bad.code, 2);
  }));

test("cli: a self-upgrade marker goes when its owner stops; a killed owner's is stale and clean removes it", () =>
  withPlace(async (place) => {
    const stopped = new Peer(place.group, runtime, [
      "--dir",
      place.dir,
      "--upgrade-on-sighup",
    ]);
    await stopped.event("ready");
    const stoppedMarker = join(place.dir, `${stopped.pid}.self-upgrade`);
    assert(existsSync(stoppedMarker), "no marker while listening for SIGHUP");
    stopped.child.kill("SIGTERM");
    await stopped.gone();
    assert(!existsSync(stoppedMarker), "stop() left the marker");

    const killed = new Peer(place.group, runtime, [
      "--dir",
      place.dir,
      "--upgrade-on-sighup",
    ]);
    await killed.event("ready");
    killed.child.kill("SIGKILL");
    await killed.child.exited;
    const upgrade = await runCli(runtime, ["upgrade", place.dir]);
    assertEquals(upgrade.code, 3, upgrade.stderr);
    const cleaned = await runCli(runtime, ["clean", place.dir, "--json"]);
    assertEquals(JSON.parse(cleaned.stdout).removed, [
      join(place.dir, `${killed.pid}.sock`),
      join(place.dir, `${killed.pid}.self-upgrade`),
    ]);
  }));
