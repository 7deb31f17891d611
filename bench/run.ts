/**
 * The benchmark suite: handover cost, adapter throughput, upgrades under
 * load and idle cost, each as a table with its baseline from the same run.
 * Prints the machine and runtime versions first and writes everything to
 * `.tmp/bench-results.md` too. Exits 1 if a request failed under load.
 *
 * Run with `npm run bench` or `deno run -A bench/run.ts [--quick]
 * [--only handover,adapters,load,idle]`. Set `TABLEROLL_REFERENCE_BIN` to a
 * program taking the flags of `examples/hello.ts` to measure it alongside.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { REFERENCE_ENV, ROOT, type Runtime } from "../examples/demo/copies.ts";
import { ProcessGroup } from "../examples/demo/processes.ts";
import { adapterThroughput } from "./adapters.ts";
import { exampleStartup, handoverCost } from "./handover.ts";
import { idleCost, WARM_UP_REQUESTS } from "./idle.ts";
import { upgradesUnderLoad } from "./load.ts";
import { describeMachine } from "./machine.ts";

const PARTS = ["handover", "adapters", "load", "idle"] as const;

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
const withReference: Runtime[] = process.env[REFERENCE_ENV]
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

let ok = true;
if (only.has("handover")) {
  emit("## Handover cost: Upgrader.create() → ready()\n");
  emit(
    "Fresh: no predecessor, the listeners are created (the baseline). " +
      "Takeover: the same process inheriting them from a running predecessor. " +
      `Medians of ${quick ? 3 : 5} rounds.\n`,
  );
  emit(
    await handoverCost(group, {
      runtimes: ["deno", "bun"],
      counts: [1, 100, 1000],
      rounds: quick ? 3 : 5,
    }) + "\n",
  );
  emit(await exampleStartup(group, withReference, quick ? 3 : 5) + "\n");
}
if (only.has("adapters")) {
  emit("## Throughput: adapters against the plain native server\n");
  emit(await adapterThroughput(group, quick) + "\n");
}
if (only.has("load")) {
  const upgrades = quick ? 3 : 5;
  emit("## Upgrades under load\n");
  emit(
    `${upgrades} upgrades per row, 4 clients, 400 requests/s in total, 1.5 s ` +
      "steady between upgrades. Handover = from the new process's start to the " +
      "old one's exit; the baseline is the steady state of the same run.\n",
  );
  const result = await upgradesUnderLoad(group, {
    runtimes: withReference,
    upgrades,
    intervalMs: 1500,
    rate: 400,
    clients: 4,
  });
  ok &&= result.ok;
  emit(result.table + "\n");
}
if (only.has("idle")) {
  const seconds = quick ? 10 : 60;
  emit("## Idle cost\n");
  emit(
    `An owner waiting ${seconds} s for a successor (the example after READY and ` +
      `${WARM_UP_REQUESTS} warm-up requests) against a plain server with the same handler ` +
      "and no upgrader. CPU time from /proc/<pid>/stat (10 ms ticks), RSS from /proc/<pid>/status.\n",
  );
  emit(await idleCost(group, withReference, seconds) + "\n");
}

await group.close();
mkdirSync(`${ROOT}.tmp`, { recursive: true });
writeFileSync(`${ROOT}.tmp/bench-results.md`, report.join("\n"));
console.log(`written to ${ROOT}.tmp/bench-results.md`);
process.exit(ok ? 0 : 1);
