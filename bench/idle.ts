/**
 * Idle cost: CPU time an owner spends waiting for a successor, and resident
 * memory of the example service against a plain server with the same
 * handler and no upgrader, same runtime. All processes idle side by side in
 * the same window, after the same warm-up traffic.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sleep } from "../testing/clock.ts";
import type { Copy, Runtime } from "../testing/copies.ts";
import { flavours } from "./flavours.ts";
import { startLoad } from "../testing/load.ts";
import { rssKiB } from "../testing/memory.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { formatTable, ratio } from "../testing/table.ts";

/** Requests each process serves before the idle window opens. */
export const WARM_UP_REQUESTS = 200;
const TIMEOUT_MS = 60_000;
const WARM_UP_LIMIT_MS = 5_000;

/** The unit of the times in `/proc/<pid>/stat`: clock ticks per second (`getconf CLK_TCK`). */
export function clockTicksPerSecond(): number {
  return Number(
    execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim(),
  );
}

/**
 * CPU time (user + system) of `pid` in milliseconds, from `/proc/<pid>/stat`;
 * NaN once the process is gone.
 */
export function cpuTimeMs(pid: number, ticksPerSecond: number): number {
  const stat = readProc(pid, "stat");
  // Fields after the parenthesised command name; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

/**
 * Sends {@linkcode WARM_UP_REQUESTS} to the server on `port` (one keep-alive
 * and one new-connection client, as fast as it answers, 5 s at most);
 * resolves with how many failed.
 */
export async function warmUp(port: number): Promise<number> {
  const load = startLoad({
    hostname: "127.0.0.1",
    port,
    keepAliveClients: 1,
    newConnectionClients: 1,
    rate: 0,
    maxRequests: WARM_UP_REQUESTS,
  });
  // A server that does not answer must not hold the bench up.
  const deadline = setTimeout(() => load.stop(), WARM_UP_LIMIT_MS);
  await load.done;
  clearTimeout(deadline);
  return load.samples.filter((s) => s.error).length;
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "utf8");
  } catch {
    return "";
  }
}

interface Subject {
  /** The flavour's label: the runtime or the build. */
  flavour: string;
  label: string;
  /** The pid printed in `READY`: the process that serves. */
  pid: number;
  copy: Copy;
  warmUpFailures: number;
}

/**
 * Starts the example (and the plain server, where the runtime has one) for
 * each runtime, warms them up, lets them idle for `seconds` and returns the
 * table.
 */
export async function idleCost(
  group: ProcessGroup,
  runtimes: Runtime[],
  seconds: number,
): Promise<string> {
  const ticksPerSecond = clockTicksPerSecond();
  const tmp = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
  try {
    const subjects: Subject[] = [];
    for (const flavour of flavours(runtimes, tmp)) {
      const starts: [string, typeof flavour.example | undefined][] = [
        ["example", flavour.example],
        ["plain server", flavour.plain],
      ];
      for (const [label, start] of starts) {
        if (!start) continue;
        const port = await freePort();
        const copy = start(group, {
          dir: join(tmp, `${subjects.length}`),
          name: "web",
          addr: `127.0.0.1:${port}`,
          delay: 0,
        });
        const ready = await copy.ready(TIMEOUT_MS);
        subjects.push({
          flavour: flavour.label,
          label,
          pid: Number(ready.text.split(" ")[1]),
          copy,
          warmUpFailures: await warmUp(port),
        });
      }
    }
    // Let the warm-up settle (timers, GC) before the window opens.
    await sleep(1000);
    const before = subjects.map((s) => cpuTimeMs(s.pid, ticksPerSecond));
    await sleep(seconds * 1000);
    const measured = subjects.map((s, i) => ({
      ...s,
      cpuMs: cpuTimeMs(s.pid, ticksPerSecond) - before[i],
      rss: rssKiB(s.pid),
    }));
    return formatTable(
      [
        "runtime",
        "process",
        `CPU in ${seconds} s idle`,
        "CPU share",
        "RSS after warm-up",
        "RSS vs plain",
        "note",
      ],
      measured.map((m) => {
        const plain = measured.find((p) =>
          p.flavour === m.flavour && p.label === "plain server"
        );
        const exit = m.copy.child.exit;
        return [
          m.flavour,
          m.label,
          Number.isNaN(m.cpuMs) ? "–" : `${Math.round(m.cpuMs)} ms`,
          Number.isNaN(m.cpuMs)
            ? "–"
            : `${((100 * m.cpuMs) / (seconds * 1000)).toFixed(2)} %`,
          Number.isNaN(m.rss) ? "–" : `${(m.rss / 1024).toFixed(1)} MiB`,
          plain ? ratio(m.rss, plain.rss) : "–",
          [
            exit ? `exited (${exit.signal ?? `status ${exit.code}`})` : "",
            m.warmUpFailures
              ? `${m.warmUpFailures} of ${WARM_UP_REQUESTS} warm-up requests failed`
              : "",
          ].filter(Boolean).join("; "),
        ];
      }),
    );
  } finally {
    await group.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}
