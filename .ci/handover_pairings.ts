/**
 * One handover of `examples/hello.ts` under light loopback load in each of
 * the four Deno/Bun pairings (Deno→Deno, Deno→Bun, Bun→Deno, Bun→Bun). The
 * copies run on the binaries `TABLEROLL_DENO` / `TABLEROLL_BUN` name (see
 * `testing/copies.ts`); `.ci/aarch64` points them at emulated aarch64 builds.
 * Prints one line per pairing, ends with `N passed, N failed` and exits
 * non-zero if any pairing lost a request or did not hand over.
 *
 * Usage: deno run -A .ci/handover_pairings.ts [TIMEOUT_MS]
 *
 * @module
 */
import process from "node:process";
import type { Runtime } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { succeeded, summary } from "../testing/report.ts";
import { runRollingUpgrade } from "../testing/rolling.ts";

const timeoutMs = Number(process.argv[2] ?? 60_000);
const runtimes: Runtime[] = ["deno", "bun"];
let passed = 0, failed = 0;
for (const from of runtimes) {
  for (const to of runtimes) {
    const group = new ProcessGroup();
    try {
      const run = runRollingUpgrade({
        group,
        runtimeOf: (i) => (i === 0 ? from : to),
        upgrades: 1,
        intervalMs: 1_000,
        delay: 5,
        load: {
          keepAliveClients: 1,
          newConnectionClients: 1,
          rate: 50,
          maxRequests: 10_000,
        },
        timeoutMs,
      });
      await run.done;
      const ok = succeeded(run);
      if (ok) passed++;
      else failed++;
      // The first line of the summary: requests and failures.
      console.log(
        `handover ${from} -> ${to}: ${ok ? "ok" : "FAILED"}; ${
          summary(run).split("\n")[0]
        }`,
      );
      if (!ok) console.log(summary(run));
    } finally {
      await group.close();
    }
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
