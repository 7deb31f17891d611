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
import { commandLine, type Copy, type Runtime } from "../testing/copies.ts";
import { type Flavour, flavours } from "./flavours.ts";
import { peakRssKiB } from "../testing/memory.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { difference, formatTable, mib, ms, ratio } from "../testing/table.ts";
import { median } from "../testing/stats.ts";

const TIMEOUT_MS = 60_000;

/**
 * How long a predecessor runs before its successor starts. A real one has
 * served for a while; one taken over in its own first moments is still
 * starting up (Deno writes its code cache, both compile lazily), which
 * competes with the takeover for this machine's two CPUs.
 */
const SETTLE_MS = 500;

function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}

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
    await settle();
    const takeover = await timings(spawnFixture());
    await first.exited;
    return { fresh, takeover };
  } finally {
    await group.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * For each runtime: a plain native server's spawn → listening (the
 * baseline: the example's handler and flags, no upgrader) against the
 * example's spawn → `READY`, fresh and taking over, with each process's peak
 * resident memory at that moment (`VmHWM`). Medians of `rounds`. With Bun,
 * also both programs built with `bun build` (see {@linkcode flavours}).
 */
export async function exampleStartup(
  group: ProcessGroup,
  runtimes: Runtime[],
  rounds: number,
): Promise<string> {
  const builds = mkdtempSync(join(tmpdir(), "tableroll-bench-build-"));
  try {
    const rows: string[][] = [];
    for (const flavour of flavours(runtimes, builds)) {
      rows.push(await startupRow(group, flavour, rounds));
    }
    return formatTable([
      "runtime",
      "plain: spawn → listening",
      "example fresh: spawn → READY",
      "example takeover: spawn → READY",
      "takeover − plain",
      "plain peak RSS",
      "fresh peak RSS",
      "takeover peak RSS",
      "takeover − plain RSS",
    ], rows);
  } finally {
    rmSync(builds, { recursive: true, force: true });
  }
}

async function startupRow(
  group: ProcessGroup,
  flavour: Flavour,
  rounds: number,
): Promise<string[]> {
  const plain: Start[] = [];
  const fresh: Start[] = [];
  const takeover: Start[] = [];
  for (let round = 0; round < rounds; round++) {
    const tmp = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
    const flags = {
      dir: join(tmp, "coordination"),
      name: "web",
      addr: `127.0.0.1:${await freePort()}`,
      delay: 0,
    };
    try {
      if (flavour.plain) {
        plain.push(await started(flavour.plain(group, flags)));
        await group.close();
      }
      const first = flavour.example(group, flags);
      fresh.push(await started(first));
      await settle();
      takeover.push(await started(flavour.example(group, flags)));
      await first.drained(TIMEOUT_MS);
    } finally {
      await group.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const [p, f, t] = [plain, fresh, takeover].map((starts) => ({
    ms: median(starts.map((s) => s.ms)),
    peakKiB: median(starts.map((s) => s.peakKiB)),
  }));
  const hasPlain = plain.length > 0;
  return [
    flavour.label,
    hasPlain ? ms(p.ms) : "–",
    ms(f.ms),
    ms(t.ms),
    hasPlain ? difference(t.ms - p.ms, ms) : "–",
    hasPlain ? mib(p.peakKiB) : "–",
    mib(f.peakKiB),
    mib(t.peakKiB),
    hasPlain ? difference(t.peakKiB - p.peakKiB, mib) : "–",
  ];
}

interface Start {
  /** Spawn → `READY` in milliseconds. */
  ms: number;
  /** Peak resident memory at `READY`, KiB. */
  peakKiB: number;
}

async function started(copy: Copy): Promise<Start> {
  const ready = await copy.ready(TIMEOUT_MS);
  return {
    ms: ready.at - copy.child.startedAt,
    peakKiB: peakRssKiB(Number(ready.text.split(" ")[1])),
  };
}
