/**
 * The summary printed when a rolling upgrade has ended: requests and
 * failures, the time of each handover, and latency during handovers against
 * latency outside them.
 *
 * @module
 */
import type { ClientKind } from "./load.ts";
import type { RollingRun } from "./rolling.ts";
import { type Latency, totals } from "./stats.ts";
import { count, formatTable, ms } from "./table.ts";

/** Whether the run went through without a failed request or any other problem. */
export function succeeded(run: RollingRun): boolean {
  return run.problems.length === 0 && run.handovers.length === run.upgrades &&
    run.samples.every((s) => s.error === undefined);
}

/** The summary of a finished run, as printable text. */
export function summary(run: RollingRun): string {
  const all = totals(run.samples, run.handovers);
  const kinds: ClientKind[] = ["keep-alive", "new-connection"];
  const byKind = kinds.map((kind) =>
    [
      kind,
      totals(run.samples.filter((s) => s.kind === kind), run.handovers),
    ] as const
  );
  const out = [
    `requests ${count(all.requests)}, failed ${count(all.failed)} (${
      byKind.map(([kind, t]) =>
        `${kind}: ${count(t.requests)} sent, ${count(t.failed)} failed`
      )
        .join("; ")
    })`,
  ];
  if (all.errors.length) {
    out.push(
      `failures: ${
        all.errors.map(([reason, n]) => `${n}× ${reason}`).join(", ")
      }`,
    );
  }
  out.push(
    "",
    formatTable(
      [
        "upgrade",
        "old → new process",
        "start → READY",
        "start → old DRAINED",
        "old exit",
      ],
      run.handovers.map((h) => [
        `#${h.index}`,
        `${h.from.servingPid} ${h.from.runtime} → ${h.to.servingPid} ${h.to.runtime}`,
        ms(h.to.readyAt! - h.to.startedAt),
        ms(h.from.drainedAt! - h.to.startedAt),
        String(h.from.exitCode),
      ]),
    ),
    "",
    formatTable(
      ["latency of requests", "requests", "p50", "p99", "max"],
      [["all", all] as const, ...byKind].flatMap(([label, t]) => [
        latencyRow(`${label}, during handovers`, t.handover),
        latencyRow(`${label}, outside handovers`, t.steady),
      ]),
    ),
  );
  if (run.problems.length) out.push("", "problems:", ...run.problems);
  return out.join("\n");
}

/** A table row: label, count, p50, p99, max. */
function latencyRow(label: string, latency: Latency): string[] {
  return [
    label,
    count(latency.count),
    ms(latency.p50),
    ms(latency.p99),
    ms(latency.max),
  ];
}
