/**
 * Requests per second of `Deno.serve` and `Bun.serve` through tableroll's
 * adapters (on an upgrader's listener, adopted into the native server)
 * against the same runtime's plain native server with the same handler.
 * Plain and adapted runs alternate within one invocation; the table shows
 * the median of each and the median of the rounds' ratios (target ≥ 0.98).
 *
 * Needs `wrk` (Debian: `apt-get install wrk`). Run with
 * `deno run -A bench/adapter_throughput.ts [--quick]`.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { commandLine } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { formatTable } from "../testing/table.ts";

const { values } = parseArgs({
  options: { quick: { type: "boolean", default: false } },
});
const rounds = values.quick ? 3 : 9;
const seconds = 3;
const connections = 32;

try {
  execFileSync("wrk", ["--version"], { stdio: "ignore" });
} catch (err) {
  // wrk prints its version and exits 1; only a missing binary is an error.
  if ((err as { code?: string }).code === "ENOENT") {
    console.error("wrk is not installed: apt-get install wrk");
    process.exit(2);
  }
}

/** Median of `values`. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Starts one server, loads it with wrk, stops it; returns requests/s. */
async function measure(
  group: ProcessGroup,
  runtime: "deno" | "bun",
  mode: "plain" | "adapted",
  tmp: string,
): Promise<number> {
  const port = await freePort();
  const child = group.spawn(
    ...commandLine(runtime, "bench/fixtures/native_server.ts", [
      "--mode",
      mode,
      "--port",
      String(port),
      "--dir",
      join(tmp, `${runtime}-${port}`),
    ]),
  );
  try {
    await child.waitForLine(/^READY \d+$/, 20_000);
    const out = execFileSync("wrk", [
      "-t1",
      `-c${connections}`,
      `-d${seconds}s`,
      `http://127.0.0.1:${port}/`,
    ], { encoding: "utf8" });
    const rate = /Requests\/sec:\s+([\d.]+)/.exec(out);
    const errors = /Non-2xx|Socket errors/.exec(out);
    if (!rate || errors) throw new Error(`wrk failed:\n${out}`);
    return Number(rate[1]);
  } finally {
    child.kill("SIGTERM");
    await child.exited;
  }
}

const group = new ProcessGroup();
group.closeOnSignals();
const tmp = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
const rows: string[][] = [];
try {
  for (const runtime of ["deno", "bun"] as const) {
    const results = { plain: [] as number[], adapted: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      // Alternate which goes first so drift does not favour one side.
      const order = i % 2
        ? ["adapted", "plain"] as const
        : ["plain", "adapted"] as const;
      for (const mode of order) {
        results[mode].push(await measure(group, runtime, mode, tmp));
      }
    }
    // Each round's pair ran back to back: the median of their ratios is
    // robust to load that other processes put on the machine meanwhile.
    const ratios = results.adapted.map((a, i) => a / results.plain[i]);
    rows.push([
      runtime === "deno" ? "Deno.serve" : "Bun.serve",
      `${Math.round(median(results.plain))} req/s`,
      `${Math.round(median(results.adapted))} req/s`,
      `${median(ratios).toFixed(3)}×`,
    ]);
  }
} finally {
  await group.close();
  rmSync(tmp, { recursive: true, force: true });
}
console.log(
  `wrk -t1 -c${connections} -d${seconds}s, ${rounds} rounds of one plain and one adapted run; ` +
    `load average ${
      loadavg()[0].toFixed(2)
    } (other processes skew the ratio)\n`,
);
console.log(
  formatTable(["server", "plain (baseline)", "adapted", "ratio"], rows),
);
