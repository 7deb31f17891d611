/**
 * Who may take over: only the process holding the lock is handed anything;
 * a client that merely connects is turned away at once and blocks nobody,
 * and a lock holder that stalls is named to the process waiting behind it.
 */
import { connect } from "node:net";
import process from "node:process";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert } from "./support/assert.ts";
import {
  assertOwner,
  lockIsFree,
  owning,
  peer,
  WEB,
  withPlace,
} from "./fixtures/places.ts";

test(`hardening (${runtime}): a silent client on the control socket is turned away at once and blocks no upgrade`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place, ["--upgrade-timeout", "60000"]);
    const silent = connect(join(place.dir, `${first.pid}.sock`));
    const hungUp = new Promise((resolve) => silent.on("close", resolve));
    silent.on("error", () => {});
    await first.log(
      "warn",
      new RegExp(
        `refused pid ${process.pid}: only the process holding the lock on .* may take over, and nobody holds it`,
      ),
    );
    await hungUp;
    const started = Date.now();
    const [next] = await owning(place);
    await first.gone();
    assert(Date.now() - started < 10_000, "the upgrade was not held up");
    await assertOwner(place, next, port);
  }));

test(`hardening (${runtime}): a successor waiting behind a stalled lock holder is told its pid and for how long`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place);
    const stalled = peer(place, "--fd", WEB, "--ready", "never");
    await stalled.event("created");
    const waiting = peer(place, "--fd", WEB, "--serve");
    const message = await waiting.log(
      "warn",
      new RegExp(
        `waiting: pid ${stalled.pid} has held the lock on .*pid for at least \\d+\\.\\d s`,
      ),
    );
    assert(message.includes(stalled.pid.toString()), message);
    stalled.child.kill("SIGTERM"); // it gives up: the lock goes to the waiting one
    await stalled.gone();
    await waiting.event("ready");
    await first.gone();
    await assertOwner(place, waiting, port);
    assert(lockIsFree(place), "the lock is free");
  }));
