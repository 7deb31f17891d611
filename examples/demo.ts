/**
 * The rolling-upgrade demo: starts `examples/hello.ts`, sends bounded
 * loopback traffic with keep-alive and new-connection clients, replaces the
 * serving process several times by starting independent new copies, shows
 * who serves what live, and ends with a summary and an SVG timeline.
 * Exits 0 only when no request failed and every handover completed.
 *
 * Run with `npm run demo` or `deno run -A examples/demo.ts --help`.
 *
 * @module
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  type Lineup,
  LINEUPS,
  REFERENCE_ENV,
  ROOT,
} from "../testing/copies.ts";
import { LiveView } from "../testing/live.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { succeeded, summary } from "../testing/report.ts";
import { runRollingUpgrade } from "../testing/rolling.ts";
import { timeline } from "../testing/stats.ts";
import { renderTimeline } from "../testing/svg.ts";

const USAGE = `Usage: deno run -A examples/demo.ts [options]

  --runtime deno|bun|mixed|reference|interop
                            what runs the copies (default deno); mixed
                            alternates Deno and Bun, reference runs
                            \$${REFERENCE_ENV}, interop cycles through
                            the reference, Deno and Bun
  --upgrades N              handovers to perform (default 5)
  --interval MS             steady time around each handover (default 2000)
  --rate N                  total requests per second, 0 for back to back
                            (default 500)
  --keep-alive N            clients reusing one connection (default 3)
  --new-connection N        clients opening a connection per request (default 3)
  --max-requests N          stop sending after this many (default 100000)
  --delay MS                response delay of the service (default 5)
  --out DIR                 where the SVG timeline goes (default ./.tmp)
`;

const { values } = parseArgs({
  options: {
    runtime: { type: "string", default: "deno" },
    upgrades: { type: "string", default: "5" },
    interval: { type: "string", default: "2000" },
    rate: { type: "string", default: "500" },
    "keep-alive": { type: "string", default: "3" },
    "new-connection": { type: "string", default: "3" },
    "max-requests": { type: "string", default: "100000" },
    delay: { type: "string", default: "5" },
    out: { type: "string", default: resolve(ROOT, ".tmp") },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const runtimeOf: Lineup | undefined = LINEUPS[values.runtime];
const numbers = [
  "upgrades",
  "interval",
  "rate",
  "keep-alive",
  "new-connection",
  "max-requests",
  "delay",
] as const;
const n = Object.fromEntries(
  numbers.map((k) => [k, Number(values[k])]),
) as Record<typeof numbers[number], number>;
const invalid = numbers.filter((k) => !Number.isInteger(n[k]) || n[k] < 0);
if (!runtimeOf) usageError(`unknown --runtime ${values.runtime}`);
if (invalid.length) usageError(`invalid --${invalid.join(", --")}`);
if (
  ["reference", "interop"].includes(values.runtime) &&
  !process.env[REFERENCE_ENV]
) {
  usageError(`--runtime ${values.runtime} needs ${REFERENCE_ENV}`);
}

function usageError(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

const group = new ProcessGroup();
const run = runRollingUpgrade({
  group,
  runtimeOf,
  upgrades: n.upgrades,
  intervalMs: n.interval,
  delay: n.delay,
  load: {
    keepAliveClients: n["keep-alive"],
    newConnectionClients: n["new-connection"],
    rate: n.rate,
    maxRequests: n["max-requests"],
  },
});
const view = new LiveView(run);
group.closeOnSignals(() => {
  view.stop();
  rmSync(run.tmp, { recursive: true, force: true });
  console.log("interrupted: every process started is gone");
});
await run.done;
view.stop();

console.log(`\n${summary(run)}\n`);
mkdirSync(values.out, { recursive: true });
const svgPath = resolve(values.out, "demo-timeline.svg");
writeFileSync(
  svgPath,
  renderTimeline(
    timeline(run.samples, run.startedAt, run.endedAt!, 100),
    run.copies.map((c) => ({ pid: c.servingPid ?? c.pid, runtime: c.runtime })),
    run.handovers,
    `tableroll: ${n.upgrades} upgrades under load (${values.runtime})`,
  ),
);
console.log(`timeline: ${svgPath}`);
const ok = succeeded(run);
console.log(ok ? "OK: no request failed" : "FAILED");
process.exit(ok ? 0 : 1);
