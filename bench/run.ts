/**
 * The benchmark suite: handover cost, adapter throughput, upgrades under
 * load, a soak of many upgrades, idle cost, a successor killed with and
 * without a rollback window, a flood of refused connections on the
 * control socket and what importing the library and a whole start cost,
 * each as a table with its baseline from the same run.
 * Prints the machine and runtime versions first and writes everything to
 * `.tmp/bench-results.md` too. Exits 1 if a request failed under load or a
 * part could not run.
 *
 * Run with `npm run bench` or `deno run -A bench/run.ts [--quick]
 * [--only handover,adapters,load,soak,idle,rollback,flood,startup]`. Set
 * `TABLEROLL_REFERENCE_BIN` to a program taking the flags of
 * `examples/hello.ts` to measure it alongside.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { REFERENCE_ENV, ROOT, type Runtime } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { adapterThroughput } from "./adapters.ts";
import { exampleStartup, handoverCost } from "./handover.ts";
import { selfUpgradeStartup } from "./self_upgrade.ts";
import { idleCost, WARM_UP_REQUESTS } from "./idle.ts";
import { upgradesUnderLoad } from "./load.ts";
import { describeMachine } from "./machine.ts";
import { rollbackUnderLoad } from "./rollback.ts";
import { soak } from "./soak.ts";
import { controlFloodCost } from "./control_flood.ts";
import { importCost } from "./import_cost.ts";
import { startCost } from "./start_cost.ts";

const PARTS = [
  "handover",
  "adapters",
  "load",
  "soak",
  "idle",
  "rollback",
  "flood",
  "startup",
] as const;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string", default: PARTS.join(",") },
  },
});
const only = new Set(values.only.split(","));
const unknown = [...only].filter((p) =>
  !(PARTS as readonly string[]).includes(p)
);
if (unknown.length) {
  console.error(
    `unknown part(s): ${unknown.join(", ")}; parts: ${PARTS.join(", ")}`,
  );
  process.exit(2);
}
const quick = values.quick;
const hasReference = Boolean(process.env[REFERENCE_ENV]);
const runtimes: Runtime[] = hasReference
  ? ["deno", "bun", "reference"]
  : ["deno", "bun"];

const group = new ProcessGroup();
group.closeOnSignals();
const report: string[] = [];
const emit = (text: string) => {
  console.log(text);
  report.push(text);
};

emit(`# tableroll benchmarks${quick ? " (--quick)" : ""}\n`);
emit(describeMachine().map((line) => `- ${line}`).join("\n") + "\n");

/** A part of the suite: a heading, what it measures, and its table. */
interface Part {
  title: string;
  intro?: string;
  run(): Promise<string | { table: string; ok: boolean }>;
}

const rounds = quick ? 3 : 5;
const upgrades = quick ? 3 : 5;
const idleSeconds = quick ? 10 : 60;
const soakUpgrades = quick ? 20 : 200;
const floodConnections = 5_000;
const startRounds = quick ? 5 : 11;
const parts: Record<typeof PARTS[number], Part> = {
  handover: {
    title: "Handover cost: Upgrader.create() → ready()",
    intro: "Fresh: no predecessor, the listeners are created (the baseline). " +
      "Takeover: the same process inheriting them from a running predecessor. " +
      `Medians of ${rounds} rounds.`,
    run: async () =>
      await handoverCost(group, {
        runtimes: ["deno", "bun"],
        counts: [1, 100, 1000],
        rounds,
      }) + "\n\n" + await exampleStartup(group, runtimes, rounds) +
      "\n\n" + await selfUpgradeStartup(group, ["deno", "bun"], rounds),
  },
  adapters: {
    title: "Throughput: adapters against the plain native server",
    run: () => adapterThroughput(group, quick),
  },
  load: {
    title: "Upgrades under load",
    intro:
      `${upgrades} upgrades per row (mixed: Deno and Bun copies in turn), ` +
      "4 clients, 400 requests/s in total, " +
      "1.5 s steady between upgrades. Handover = from the new process's start " +
      "to the old one's exit; the baseline is the steady state of the same run.",
    run: () =>
      upgradesUnderLoad(group, {
        lineups: [
          "deno",
          "bun",
          "mixed",
          ...(hasReference ? ["reference"] : []),
        ],
        upgrades,
        intervalMs: 1500,
        rate: 400,
        clients: 4,
      }),
  },
  soak: {
    title: `Soak: ${soakUpgrades} upgrades`,
    intro: `${soakUpgrades} upgrades in a row, Deno and Bun copies in turn ` +
      "(odd upgrades hand to Bun, even ones to Deno), 2 keep-alive and 2 " +
      "new-connection clients, 200 requests/s in total, 0.5 s steady between " +
      "upgrades. The new owner's descriptors (/proc/<pid>/fd) and RSS, 0.25 s " +
      "after its predecessor exited, against the first reading of the same runtime.",
    run: () =>
      soak(group, { upgrades: soakUpgrades, intervalMs: 500, rate: 200 }),
  },
  idle: {
    title: "Idle cost",
    intro: `An owner waiting ${idleSeconds} s for a successor (the example ` +
      `after READY and ${WARM_UP_REQUESTS} warm-up requests) against a plain ` +
      "server with the same handler and no upgrader. CPU time from " +
      "/proc/<pid>/stat (10 ms ticks), RSS from /proc/<pid>/status.",
    run: () => idleCost(group, runtimes, idleSeconds),
  },
  rollback: {
    title: "Rollback: the new version killed right after READY",
    intro: "Per row: the old version serves, the new one takes over and is " +
      "killed (SIGKILL) as soon as it printed READY; 8 clients of one kind, " +
      "400 requests/s in total, watched for 3 s after the kill. Without a " +
      "window (the baseline, as Go tableroll does) the old version drains " +
      "and exits; with one it takes the service back. Lost: requests that " +
      "were on the killed process. Without service: the longest time after " +
      "the kill with no answer.",
    run: () =>
      rollbackUnderLoad(group, {
        pairs: [
          ["deno", "deno"],
          ["bun", "bun"],
          ["deno", "bun"],
          ["bun", "deno"],
          // A Go successor dying is rolled back from; a Go predecessor has no window.
          ...(hasReference
            ? [["deno", "reference"], ["reference", "reference"]] as const
            : []),
        ] as [Runtime, Runtime][],
        windowMs: 5000,
        observeMs: 3000,
        rate: 400,
        clients: 8,
      }),
  },
  flood: {
    title: "Refused connections on the control socket",
    intro: `The example after READY and ${WARM_UP_REQUESTS} warm-up ` +
      `requests, flooded with ${floodConnections.toLocaleString("en")} ` +
      "connections to its control socket that hang up at once (from the " +
      "bench, which does not hold the lock: each is refused), then 3 s " +
      "later with as many again; beside it a copy of the same runtime left " +
      "alone, read at the same moments (the baseline). RSS is VmRSS, its " +
      "private part RssAnon, from /proc/<pid>/status; CPU time from " +
      "/proc/<pid>/stat (10 ms ticks).",
    run: () => controlFloodCost(group, ["deno", "bun"], floodConnections),
  },
  startup: {
    title: "Start-up: what importing the library and a whole start cost",
    run: async () =>
      [
        "What importing costs: the library's modules a program that imports " +
        "the root, or the root and `./serve`, and nothing else makes the " +
        "runtime load, and the size of their source, counted from the " +
        "files the runtime opens (`strace -f`, the second run of the " +
        "program: caches warm). The check rows, the baseline, show that " +
        "the count is exact on each runtime: one module counts one, and a " +
        "dynamic import not taken is not counted. Deno reads (without " +
        "running) the target of every dynamic import written as a literal, " +
        "to build its module graph: those are counted apart; a module it " +
        "runs is one whose transpiled copy it reads from its cache. The " +
        "npm bundle is what `npm run prepack` makes of a temporary copy of " +
        "the working tree. Before the 1.0 restructuring: 46 modules and 274 KiB of " +
        "source for the root and `./serve`.",
        importCost(),
        "What a start costs, whole process: `Upgrader.create` on a fresh " +
        "directory, `./serve` on 127.0.0.1 port 0 with a trivial handler, " +
        "`ready()`, then the server and the upgrader stopped and the " +
        "process exiting by itself (`bench/fixtures/start_library.ts`), " +
        "against the plain native server started and shut down " +
        "(`bench/fixtures/start_plain.ts`), both built and run the same " +
        "way. The server is stopped with `drainGracePeriod: 0`: this " +
        "measures a start, not the grace period. Peak RSS is `VmHWM` as the " +
        "program ends; of which stopping: the library's stop against the " +
        "plain server's, timed in the process. Medians of " +
        `${startRounds} rounds of the two in turn, after a warm-up round.`,
        await startCost(group, startRounds),
        "Before the 1.0 restructuring (whole process, medians of 11, when " +
        "the targets were set): Deno +34 ms and +13.3 MiB (58 against " +
        "24 ms, 44.2 against 30.9 MiB), Bun +22 ms and +15.9 MiB (29 " +
        "against 7 ms, 39.9 against 24.0 MiB).",
      ].join("\n\n"),
  },
};

let ok = true;
for (const name of PARTS) {
  if (!only.has(name)) continue;
  const part = parts[name];
  emit(`## ${part.title}\n`);
  if (part.intro) emit(`${part.intro}\n`);
  try {
    const result = await part.run();
    if (typeof result !== "string") ok &&= result.ok;
    emit(`${typeof result === "string" ? result : result.table}\n`);
  } catch (err) {
    // One broken part must not hide the others' results.
    ok = false;
    emit(`failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await group.close();
  }
}

await group.close();
mkdirSync(`${ROOT}.tmp`, { recursive: true });
writeFileSync(`${ROOT}.tmp/bench-results.md`, report.join("\n"));
console.log(`written to ${ROOT}.tmp/bench-results.md`);
process.exit(ok ? 0 : 1);
