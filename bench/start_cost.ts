/**
 * What a start costs, whole process: a program that creates an upgrader,
 * serves through `./serve`, calls `ready()`, stops and exits
 * (`bench/fixtures/start_library.ts`) against the same start on the plain
 * native server (`bench/fixtures/start_plain.ts`), both run the same way:
 * from source under Deno and Bun, and as `bun build --target=bun` bundles.
 * Wall time from spawn to exit and peak resident memory, rounds of the two
 * interleaved.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { now, sleep } from "../testing/clock.ts";
import { commandLine } from "../testing/copies.ts";
import type { Child, ProcessGroup } from "../testing/processes.ts";
import { median } from "../testing/stats.ts";
import { difference, formatTable, mib, ms } from "../testing/table.ts";
import { bunBuild } from "./flavours.ts";

const TIMEOUT_MS = 30_000;
const PLAIN = "bench/fixtures/start_plain.ts";
const LIBRARY = "bench/fixtures/start_library.ts";

/** The 1.0 targets for library − plain, by runtime. */
const TARGETS = {
  deno: { ms: 15, kib: 8 * 1024 },
  bun: { ms: 12, kib: 8 * 1024 },
};

/** One way of running both fixtures: the commands that run them. */
interface StartFlavour {
  label: string;
  runtime: "deno" | "bun";
  plain: string[];
  library: string[];
}

/** What one run of a fixture cost. */
interface Start {
  /** Spawn → exit, milliseconds. */
  wallMs: number;
  /** From the start of its stop to its report, milliseconds. */
  stopMs: number;
  /** Peak resident set (`VmHWM`), KiB. */
  peakKiB: number;
}

/**
 * For each flavour, a warm-up round, then `rounds` rounds of the plain
 * fixture and the library's, one after the other; returns the table of
 * medians.
 */
export async function startCost(
  group: ProcessGroup,
  rounds: number,
): Promise<string> {
  const builds = mkdtempSync(join(tmpdir(), "tableroll-bench-build-"));
  try {
    const rows: string[][] = [];
    for (const flavour of startFlavours(builds)) {
      const plain: Start[] = [];
      const library: Start[] = [];
      for (let round = 0; round <= rounds; round++) {
        const p = await runFixture(group, flavour.plain);
        const l = await runFixture(group, flavour.library);
        // Round 0 warms the runtime's caches up, as every start of a
        // service after its first finds them.
        if (round === 0) continue;
        plain.push(p);
        library.push(l);
      }
      rows.push(row(flavour, plain, library));
    }
    return formatTable([
      "loaded as",
      "plain: spawn → exit",
      "library: spawn → exit",
      "library − plain",
      "of which stopping",
      "plain peak RSS",
      "library peak RSS",
      "library − plain RSS",
      "target: time; RSS",
    ], rows);
  } finally {
    rmSync(builds, { recursive: true, force: true });
  }
}

function startFlavours(buildDir: string): StartFlavour[] {
  const fromSource = (runtime: "deno" | "bun"): StartFlavour => ({
    label: runtime,
    runtime,
    plain: commandLine(runtime, PLAIN, []).flat(),
    library: commandLine(runtime, LIBRARY, []).flat(),
  });
  const options = ["--target=bun"];
  return [fromSource("deno"), fromSource("bun"), {
    label: `bun build ${options.join(" ")}`,
    runtime: "bun",
    plain: bunBuild(PLAIN, `${buildDir}/plain`, options),
    library: bunBuild(LIBRARY, `${buildDir}/library`, options),
  }];
}

/**
 * Runs `command` (the library's fixture gets a fresh coordination
 * directory) until it exits; throws unless it exits 0 with its report.
 */
async function runFixture(
  group: ProcessGroup,
  [program, ...args]: string[],
): Promise<Start> {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
  try {
    const child = group.spawn(program, [...args, dir]);
    const exit = await exitOf(child);
    const report = await reportOf(child);
    if (exit.code !== 0 || report === undefined) {
      throw new Error(
        `${program} ${args.join(" ")} ended (${
          exit.signal ?? `status ${exit.code}`
        }) without its report; its stderr ends with:\n${child.stderrTail}`,
      );
    }
    const { stopMs, peakKiB } = JSON.parse(report);
    return { wallMs: exit.at - child.startedAt, stopMs, peakKiB };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The JSON of `child`'s `REPORT` line; its stdout may still be arriving
 * when its exit is seen, so this waits up to 1 s after that for it.
 */
async function reportOf(child: Child): Promise<string | undefined> {
  for (const end = now() + 1000;; await sleep(10)) {
    const report = /^REPORT (.*)$/m.exec(child.output);
    if (report || now() > end) return report?.[1];
  }
}

/** `child`'s exit; kills it and throws if it has not exited in time. */
async function exitOf(child: Child) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`process ${child.pid} did not exit within ${TIMEOUT_MS} ms`),
      );
    }, TIMEOUT_MS);
  });
  try {
    return await Promise.race([child.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function row(
  flavour: StartFlavour,
  plain: Start[],
  library: Start[],
): string[] {
  const medians = (starts: Start[]) => ({
    wallMs: median(starts.map((s) => s.wallMs)),
    stopMs: median(starts.map((s) => s.stopMs)),
    peakKiB: median(starts.map((s) => s.peakKiB)),
  });
  const [p, l] = [medians(plain), medians(library)];
  const time = l.wallMs - p.wallMs;
  const rss = l.peakKiB - p.peakKiB;
  const target = TARGETS[flavour.runtime];
  const verdict = (value: number, limit: number) =>
    value <= limit ? "met" : "missed";
  return [
    flavour.label,
    ms(p.wallMs),
    ms(l.wallMs),
    difference(time, ms),
    difference(l.stopMs - p.stopMs, ms),
    mib(p.peakKiB),
    mib(l.peakKiB),
    difference(rss, mib),
    `≤ +${target.ms} ms ${verdict(time, target.ms)}; ` +
    `≤ +${mib(target.kib)} ${verdict(rss, target.kib)}`,
  ];
}
