import { test } from "./support/harness.ts";
import { assert } from "./support/assert.ts";
import { monotonicNanos } from "../ffi/mod.ts";
import { Child, RUNTIMES } from "./fixtures/ffi_child.ts";

test("ffi: monotonicNanos agrees between processes", async () => {
  for (const r of RUNTIMES) {
    const before = monotonicNanos();
    const child = new Child(r, "ffi_clock.ts");
    try {
      const theirs = BigInt(await child.nextLine());
      const after = monotonicNanos();
      assert(
        before < theirs && theirs < after,
        `${r} read ${theirs}, not between ${before} and ${after}`,
      );
    } finally {
      await child.kill("SIGKILL");
    }
  }
});

test("ffi: monotonicNanos never goes backwards", () => {
  let last = monotonicNanos();
  for (let i = 0; i < 10_000; i++) {
    const now = monotonicNanos();
    assert(now >= last, `${now} after ${last}`);
    last = now;
  }
});
