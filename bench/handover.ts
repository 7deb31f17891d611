/**
 * Handover cost: how long `Upgrader.create()` → `ready()` takes for a process
 * that takes 1, 100 or 1,000 listeners over from a predecessor, against the
 * same process creating them fresh (no predecessor). And, for the example
 * service and a reference implementation, spawn → `READY` fresh and taking
 * over.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { commandLine, type Runtime, startCopy } from "../testing/copies.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { formatTable, ms, ratio } from "../testing/table.ts";
import { median } from "../testing/stats.ts";

const TIMEOUT_MS = 60_000;

/** Options of {@linkcode handoverCost}. */
export interface HandoverOptions {
  /** Runtimes to run the listener fixture under. */
  runtimes: ("deno" | "bun")[];
  /** Listener counts to measure. */
  counts: number[];
  /** Measurements per cell; the table shows medians. */
  rounds: number;
}

/** Runs the fixture fresh and taking over; returns the table. */
export async function handoverCost(
  group: ProcessGroup,
  options: HandoverOptions,
): Promise<string> {
  const rows: string[][] = [];
  for (const runtime of options.runtimes) {
    for (const count of options.counts) {
      const rounds: Round[] = [];
      for (let i = 0; i < options.rounds; i++) {
        rounds.push(await fixtureRound(group, runtime, count));
      }
      const fresh = median(rounds.map((r) => r.fresh.total));
      const takeover = median(rounds.map((r) => r.takeover.total));
      rows.push([
        runtime,
        count.toLocaleString("en-US"),
        ms(fresh),
        ms(takeover),
        ratio(takeover, fresh),
        ms(median(rounds.map((r) => r.takeover.create))),
        ms(median(rounds.map((r) => r.takeover.ready))),
        ms(median(rounds.map((r) => r.takeover.wall))),
      ]);
    }
  }
  return formatTable([
    "runtime",
    "listeners",
    "fresh: create → ready",
    "takeover: create → ready",
    "takeover / fresh",
    "of which create (receive)",
    "of which ready() (step-down)",
    "takeover: spawn → ready",
  ], rows);
}

/** What the fixture reports, plus spawn → report as the driver saw it. */
interface Timings {
  create: number;
  listen: number;
  ready: number;
  total: number;
  wall: number;
}

interface Round {
  fresh: Timings;
  takeover: Timings;
}

/** One fresh process, then one that takes its listeners over. */
async function fixtureRound(
  group: ProcessGroup,
  runtime: "deno" | "bun",
  count: number,
): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
  const spawnFixture = () =>
    group.spawn(
      ...commandLine(runtime, "bench/fixtures/listeners.ts", [
        "--dir",
        dir,
        "--count",
        String(count),
      ]),
    );
  const timings = async (
    child: ReturnType<typeof spawnFixture>,
  ): Promise<Timings> => {
    const line = await child.waitForLine(/^TIMINGS /, TIMEOUT_MS);
    return {
      ...JSON.parse(line.text.slice("TIMINGS ".length)),
      wall: line.at - child.startedAt,
    };
  };
  try {
    const first = spawnFixture();
    const fresh = await timings(first);
    const takeover = await timings(spawnFixture());
    await first.exited;
    return { fresh, takeover };
  } finally {
    await group.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Spawn → `READY` of the example service (or reference), fresh and taking over. */
export async function exampleStartup(
  group: ProcessGroup,
  runtimes: Runtime[],
  rounds: number,
): Promise<string> {
  const rows: string[][] = [];
  for (const runtime of runtimes) {
    const fresh: number[] = [];
    const takeover: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const tmp = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
      const flags = {
        dir: join(tmp, "coordination"),
        name: "web",
        addr: `127.0.0.1:${await freePort()}`,
        delay: 0,
      };
      try {
        const first = startCopy(group, runtime, flags);
        fresh.push((await first.ready(TIMEOUT_MS)).at - first.child.startedAt);
        const second = startCopy(group, runtime, flags);
        takeover.push(
          (await second.ready(TIMEOUT_MS)).at - second.child.startedAt,
        );
        await first.drained(TIMEOUT_MS);
      } finally {
        await group.close();
        rmSync(tmp, { recursive: true, force: true });
      }
    }
    rows.push([
      runtime,
      ms(median(fresh)),
      ms(median(takeover)),
      ratio(median(takeover), median(fresh)),
    ]);
  }
  return formatTable([
    "example service",
    "fresh: spawn → READY",
    "takeover: spawn → READY",
    "takeover / fresh",
  ], rows);
}
