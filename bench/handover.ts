/**
 * Handover cost: how long `Upgrader.create()` → `ready()` takes for a process
 * that takes 1, 100 or 1,000 listeners over from a predecessor, against the
 * same process creating them fresh (no predecessor). And, for the example
 * service and a reference implementation, spawn → `READY` fresh and taking
 * over.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  commandLine,
  type Copy,
  ROOT,
  type Runtime,
  runtimeBinary,
  type ServiceFlags,
  startBuiltCopy,
  startCopy,
} from "../testing/copies.ts";
import { peakRssKiB, PLAIN_SERVER } from "./idle.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { formatTable, ms, ratio } from "../testing/table.ts";
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
 * also both programs built with `bun build` (see {@linkcode BUN_BUILDS}).
 */
export async function exampleStartup(
  group: ProcessGroup,
  runtimes: Runtime[],
  rounds: number,
): Promise<string> {
  const builds = mkdtempSync(join(tmpdir(), "tableroll-bench-build-"));
  try {
    const variants: Variant[] = runtimes.map((runtime) => ({
      label: runtime,
      plain: runtime === "reference"
        ? undefined
        : (flags) => startCopy(group, runtime, flags, PLAIN_SERVER),
      example: (flags) => startCopy(group, runtime, flags),
    }));
    if (runtimes.includes("bun")) {
      for (const [i, options] of BUN_BUILDS.entries()) {
        const build = (script: string, name: string) =>
          bunBuild(script, join(builds, `${name}-${i}`), options);
        const plain = build(PLAIN_SERVER, "plain");
        const example = build("examples/hello.ts", "hello");
        variants.push({
          label: `bun build ${options.join(" ")}`,
          plain: (flags) => startBuiltCopy(group, plain, flags),
          example: (flags) => startBuiltCopy(group, example, flags),
        });
      }
    }
    const rows: string[][] = [];
    for (const variant of variants) {
      rows.push(await startupRow(group, variant, rounds));
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

/** One row of {@linkcode exampleStartup}: how its processes start. */
interface Variant {
  label: string;
  /** Starts the plain server; none for a reference implementation. */
  plain?: (flags: ServiceFlags) => Copy;
  example: (flags: ServiceFlags) => Copy;
}

async function startupRow(
  group: ProcessGroup,
  variant: Variant,
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
      if (variant.plain) {
        plain.push(await started(variant.plain(flags)));
        await group.close();
      }
      const first = variant.example(flags);
      fresh.push(await started(first));
      await settle();
      takeover.push(await started(variant.example(flags)));
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
    variant.label,
    hasPlain ? ms(p.ms) : "–",
    ms(f.ms),
    ms(t.ms),
    hasPlain ? `+${ms(t.ms - p.ms)}` : "–",
    hasPlain ? mib(p.peakKiB) : "–",
    mib(f.peakKiB),
    mib(t.peakKiB),
    hasPlain ? `+${mib(t.peakKiB - p.peakKiB)}` : "–",
  ];
}

/**
 * The builds of {@linkcode exampleStartup}: one bundle (as the npm package
 * ships the library), a single binary, and one with the code shipped
 * parsed and compiled. Bytecode of an ES module (top-level await) needs the
 * ESM output.
 */
const BUN_BUILDS = [
  ["--target=bun"],
  ["--compile"],
  ["--compile", "--bytecode", "--format=esm"],
];

/** Builds `script` with `bun build` and `options` into `out`; returns the command that runs it. */
function bunBuild(script: string, out: string, options: string[]): string[] {
  const compiled = options.includes("--compile");
  const file = compiled ? out : `${out}.js`;
  const build = spawnSync(runtimeBinary("bun"), [
    "build",
    ...options,
    ROOT + script,
    "--outfile",
    file,
  ], { encoding: "utf8" });
  if (build.status !== 0) {
    throw new Error(`bun build ${script} failed: ${build.stderr}`);
  }
  return compiled ? [file] : [runtimeBinary("bun"), file];
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

function mib(kib: number): string {
  return `${(kib / 1024).toFixed(1)} MiB`;
}
