/**
 * The readiness signal of the library's waits survives what an application
 * may do to signal handling: remove every listener (Bun), ignore `SIGIO`.
 */
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { assertOwner, owning, peer, withPlace } from "./fixtures/places.ts";

/**
 * An owner whose application interferes with signals (`--signals`, see the
 * fixture): it keeps running, and a successor still takes over within a few
 * seconds.
 */
function handsOverDespite(interference: string): Promise<void> {
  return withPlace(async (place) => {
    const [owner, port] = await owning(place, ["--signals", interference]);
    await owner.event("signals");
    const started = Date.now();
    const next = peer(place, "--fd", "web=tcp:127.0.0.1:0", "--serve");
    await next.event("ready");
    const took = Date.now() - started;
    const exit = await owner.child.exited;
    assertEquals([exit.code, exit.signal], [0, null], "the owner's exit");
    await assertOwner(place, next, port);
    assert(took < 10_000, `the takeover took ${took} ms`);
  });
}

test(`signals (${runtime}): an owner whose application removed every signal listener hands over and exits 0`, () =>
  handsOverDespite("remove-all-listeners"));

test(`signals (${runtime}): an owner whose application ignores SIGIO still hands over`, () =>
  handsOverDespite("ignore"));
