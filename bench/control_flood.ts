/**
 * What refused connections on the control socket cost an owner: the example
 * after `READY` and warm-up traffic, flooded with connections that hang up
 * at once (from this process, which does not hold the lock, so each one is
 * refused), against a second copy of the same runtime left alone in the same
 * window: the baseline for what a process grows by anyway.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sleep } from "../testing/clock.ts";
import { startCopy } from "../testing/copies.ts";
import { connectAndHangUp } from "../testing/flood.ts";
import { privateRssKiB, rssKiB } from "../testing/memory.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { difference, formatTable, mib } from "../testing/table.ts";
import { clockTicksPerSecond, cpuTimeMs, warmUp } from "./idle.ts";

const TIMEOUT_MS = 60_000;
/** How long after a flood the owner is read again. */
const SETTLE_MS = 3_000;

/** The RSS of a process at one moment, in KiB. */
interface Reading {
  rss: number;
  /** The private part (`RssAnon`). */
  private: number;
}

/** One of the two owners of a runtime. */
interface Owner {
  label: string;
  pid: number;
  /** Its control socket. */
  socket: string;
  /** Warm-up requests that failed. */
  failures: number;
}

function reading(pid: number): Reading {
  return { rss: rssKiB(pid), private: privateRssKiB(pid) };
}

/**
 * For each runtime, floods one owner with two rounds of `connections`
 * refused connections, `SETTLE_MS` apart, and reads it and a copy left
 * alone before, right after and `SETTLE_MS` after the first round, and
 * `SETTLE_MS` after the second; returns the table.
 */
export async function controlFloodCost(
  group: ProcessGroup,
  runtimes: ("deno" | "bun")[],
  connections: number,
): Promise<string> {
  const ticksPerSecond = clockTicksPerSecond();
  const tmp = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
  const rows: string[][] = [];
  try {
    for (const runtime of runtimes) {
      const owners: Owner[] = [];
      for (const label of ["flooded", "left alone"]) {
        const dir = join(tmp, `${runtime}-${owners.length}`);
        const port = await freePort();
        const copy = startCopy(group, runtime, {
          dir,
          name: "web",
          addr: `127.0.0.1:${port}`,
          delay: 0,
        });
        const pid = Number((await copy.ready(TIMEOUT_MS)).text.split(" ")[1]);
        const failures = await warmUp(port);
        owners.push({ label, pid, socket: join(dir, `${pid}.sock`), failures });
      }
      await sleep(1000); // the warm-up settles (timers, GC)
      const [flooded] = owners;
      const readAll = () => owners.map((o) => reading(o.pid));
      const before = readAll();
      const cpuBefore = cpuTimeMs(flooded.pid, ticksPerSecond);
      const flood = await connectAndHangUp(
        flooded.socket,
        connections,
        TIMEOUT_MS,
      );
      const cpuMs = cpuTimeMs(flooded.pid, ticksPerSecond) - cpuBefore;
      const after = readAll();
      await sleep(SETTLE_MS);
      const settled = readAll();
      await connectAndHangUp(flooded.socket, connections, TIMEOUT_MS);
      await sleep(SETTLE_MS);
      const again = readAll();
      owners.forEach((owner, i) => {
        rows.push([
          runtime,
          owner.label,
          mib(before[i].rss),
          mib(after[i].rss),
          mib(settled[i].rss),
          difference(settled[i].rss - before[i].rss, mib),
          difference(settled[i].private - before[i].private, mib),
          mib(again[i].rss),
          owner === flooded
            ? `${(1000 * cpuMs / connections).toFixed(0)} µs (${
              (flood.ms / 1000).toFixed(1)
            } s)`
            : "–",
          owner.failures ? `${owner.failures} warm-up requests failed` : "",
        ]);
      });
    }
    return formatTable(
      [
        "runtime",
        "owner",
        "RSS before",
        "right after",
        `${SETTLE_MS / 1000} s after`,
        "growth",
        "of it private",
        `${SETTLE_MS / 1000} s after a second flood`,
        "owner CPU per refusal (flood)",
        "note",
      ],
      rows,
    );
  } finally {
    await group.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}
