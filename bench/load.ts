/**
 * Upgrades under load: the demo's rolling upgrade, once with keep-alive
 * clients only and once with new-connection clients only, per lineup
 * (Deno only, Bun only, Deno and Bun in turn, a reference implementation).
 * Latency of requests that overlap a handover is set against the steady
 * state of the same run.
 *
 * @module
 */
import type { ClientKind } from "../testing/load.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { LINEUPS } from "../testing/copies.ts";
import { runRollingUpgrade } from "../testing/rolling.ts";
import { median, totals } from "../testing/stats.ts";
import { count, formatTable, ms, ratio } from "../testing/table.ts";

/** Options of {@linkcode upgradesUnderLoad}. */
export interface LoadBenchOptions {
  /** Names of the lineups to run (keys of `LINEUPS`). */
  lineups: string[];
  /** Upgrades per run. */
  upgrades: number;
  /** Steady time around each upgrade. */
  intervalMs: number;
  /** Total requests per second. */
  rate: number;
  /** Concurrent clients. */
  clients: number;
}

/** Runs every lineup × client kind; returns the table and whether nothing failed. */
export async function upgradesUnderLoad(
  group: ProcessGroup,
  options: LoadBenchOptions,
): Promise<{ table: string; ok: boolean }> {
  const rows: string[][] = [];
  let ok = true;
  for (const lineup of options.lineups) {
    for (const kind of ["keep-alive", "new-connection"] as ClientKind[]) {
      const run = runRollingUpgrade({
        group,
        runtimeOf: LINEUPS[lineup],
        upgrades: options.upgrades,
        intervalMs: options.intervalMs,
        delay: 0,
        load: {
          keepAliveClients: kind === "keep-alive" ? options.clients : 0,
          newConnectionClients: kind === "new-connection" ? options.clients : 0,
          rate: options.rate,
          maxRequests: 1_000_000,
        },
      });
      await run.done;
      const t = totals(run.samples, run.handovers);
      const toReady = run.handovers.map((h) => h.to.readyAt! - h.to.startedAt);
      const toDrained = run.handovers.map((h) =>
        h.from.drainedAt! - h.to.startedAt
      );
      ok &&= t.failed === 0 && run.problems.length === 0;
      rows.push([
        lineup,
        kind,
        `${run.handovers.length}/${options.upgrades}`,
        count(t.requests),
        count(t.failed),
        ms(t.steady.p50),
        ms(t.steady.p99),
        ms(t.handover.p99),
        ratio(t.handover.p99, t.steady.p99),
        ms(median(toReady)),
        ms(median(toDrained)),
      ]);
      for (const problem of run.problems) {
        console.error(`${lineup}, ${kind}: ${problem}`);
      }
    }
  }
  const table = formatTable([
    "runtime",
    "clients",
    "upgrades",
    "requests",
    "failed",
    "steady p50",
    "steady p99",
    "handover p99",
    "p99 handover / steady",
    "start → READY",
    "start → old DRAINED",
  ], rows);
  return { table, ok };
}
