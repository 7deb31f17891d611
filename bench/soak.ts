/**
 * The soak: many upgrades in a row, Deno and Bun copies in turn, under
 * loopback load. Reads the new owner's descriptor count and RSS after the
 * first, middle and last upgrades (two in a row each time, so that each
 * runtime is compared with itself) and counts failed requests. Growth would
 * show as a later reading above the first of the same runtime.
 *
 * @module
 */
import { readdirSync } from "node:fs";
import { LINEUPS } from "../testing/copies.ts";
import { sleep } from "../testing/clock.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { runRollingUpgrade } from "../testing/rolling.ts";
import { totals } from "../testing/stats.ts";
import { count, formatTable, ratio } from "../testing/table.ts";
import { rssKiB } from "../testing/memory.ts";

/** Options of {@linkcode soak}. */
export interface SoakOptions {
  /** Upgrades in the run (at least 2). */
  upgrades: number;
  /** Steady time between upgrades. */
  intervalMs: number;
  /** Total requests per second. */
  rate: number;
}

/** One reading of an owner. */
interface Reading {
  upgrade: number;
  runtime: string;
  pid: number;
  fds: number;
  rssKiB: number;
}

/** Runs the soak; returns its table and whether nothing failed. */
export async function soak(
  group: ProcessGroup,
  options: SoakOptions,
): Promise<{ table: string; ok: boolean }> {
  const { upgrades, intervalMs } = options;
  const middle = Math.ceil(upgrades / 2);
  const checkpoints = [
    ...new Set([1, 2, middle - 1, middle, upgrades - 1, upgrades]),
  ]
    .filter((k) => k >= 1 && k <= upgrades);
  const run = runRollingUpgrade({
    group,
    runtimeOf: LINEUPS.mixed,
    upgrades,
    intervalMs,
    delay: 0,
    load: {
      keepAliveClients: 2,
      newConnectionClients: 2,
      rate: options.rate,
      maxRequests: 100_000_000,
    },
  });
  const readings: Reading[] = [];
  const problems: string[] = [];
  const watch = (async () => {
    for (const k of checkpoints) {
      while (run.handovers.length < k && run.endedAt === undefined) {
        await sleep(20);
      }
      if (run.handovers.length < k) return;
      // Halfway through its steady time, well before the next copy starts.
      await sleep(intervalMs / 2);
      const owner = run.handovers[k - 1].to;
      try {
        readings.push({
          upgrade: k,
          runtime: owner.runtime,
          pid: owner.pid,
          fds: readdirSync(`/proc/${owner.pid}/fd`).length,
          rssKiB: rssKiB(owner.pid),
        });
      } catch (err) {
        problems.push(`reading owner ${owner.pid} after upgrade ${k}: ${err}`);
      }
    }
  })();
  await run.done;
  await watch;
  const t = totals(run.samples, run.handovers);
  const first = (runtime: string) =>
    readings.find((r) => r.runtime === runtime)!;
  const rows = readings.map((r) => [
    String(r.upgrade),
    r.runtime,
    String(r.fds),
    ratio(r.fds, first(r.runtime).fds),
    `${(r.rssKiB / 1024).toFixed(1)} MiB`,
    ratio(r.rssKiB, first(r.runtime).rssKiB),
  ]);
  for (const problem of [...run.problems, ...problems]) console.error(problem);
  const ok = t.failed === 0 && run.problems.length === 0 &&
    problems.length === 0 && run.handovers.length === upgrades;
  const table = formatTable([
    "after upgrade",
    "owner",
    "descriptors",
    "vs first of runtime",
    "RSS",
    "vs first of runtime",
  ], rows) +
    `\n\n${run.handovers.length}/${upgrades} upgrades, ${
      count(t.requests)
    } requests, ${count(t.failed)} failed.`;
  return { table, ok };
}
