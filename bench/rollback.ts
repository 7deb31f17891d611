/**
 * Rollback: a new version killed (SIGKILL) right after it printed `READY`,
 * under loopback load, with the old version's rollback window against
 * without one (the baseline: what Go tableroll, tableflip and this library
 * without a window do). Counts refused connections and requests lost on the
 * killed process, how long nobody answered, and the time from the kill to
 * the old process's first answer.
 *
 * @module
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { type ClientKind, type Sample, startLoad } from "../testing/load.ts";
import type { ProcessGroup } from "../testing/processes.ts";
import { type Runtime, startCopy } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { now, sleep } from "../testing/clock.ts";
import { count, formatTable, ms } from "../testing/table.ts";

const TIMEOUT_MS = 60_000;

/** Options of {@linkcode rollbackUnderLoad}. */
export interface RollbackBenchOptions {
  /** Old → new runtime pairs. */
  pairs: [Runtime, Runtime][];
  /** The old process's window in the "with" rows, milliseconds. */
  windowMs: number;
  /** How long after the kill the load is watched. */
  observeMs: number;
  /** Total requests per second. */
  rate: number;
  /** Concurrent clients of each run (all of one kind). */
  clients: number;
}

/** One kill: what the clients saw from the kill on. */
interface Outcome {
  refused: number;
  lost: number;
  /** Longest time from the kill with no answer at all; the whole watch if none came back. */
  withoutService: number;
  /** Kill → the old process's answer on a new connection; `NaN` if none. */
  oldBack: number;
  restored: boolean;
  /** The 1-minute load average at the kill. */
  load: number;
}

/** Runs every pair × client kind without and with a window; returns the table. */
export async function rollbackUnderLoad(
  group: ProcessGroup,
  options: RollbackBenchOptions,
): Promise<{ table: string; ok: boolean }> {
  const rows: string[][] = [];
  let ok = true;
  for (const [from, to] of options.pairs) {
    for (const kind of ["keep-alive", "new-connection"] as ClientKind[]) {
      // A predecessor that is not this library has no window to measure.
      const windows = from === "reference" ? [0] : [0, options.windowMs];
      for (const windowMs of windows) {
        const o = await killSuccessor(group, from, to, kind, windowMs, options);
        ok &&= windowMs === 0 || (o.refused === 0 && o.restored);
        rows.push([
          `${from} → ${to}`,
          kind,
          windowMs ? `${count(windowMs)} ms` : "none",
          count(o.refused),
          count(o.lost),
          o.restored
            ? ms(o.withoutService)
            : `≥ ${ms(o.withoutService)} (never back)`,
          ms(o.oldBack),
          o.load.toFixed(1),
        ]);
      }
    }
  }
  return {
    table: formatTable([
      "old → new",
      "clients",
      "rollback window",
      "refused",
      "lost on the killed process",
      "without service",
      "kill → old answers a new connection",
      "load average",
    ], rows),
    ok,
  };
}

async function killSuccessor(
  group: ProcessGroup,
  from: Runtime,
  to: Runtime,
  kind: ClientKind,
  windowMs: number,
  options: RollbackBenchOptions,
): Promise<Outcome> {
  const tmp = mkdtempSync("/tmp/tr-rb-");
  const dir = join(tmp, "c");
  mkdirSync(dir, { mode: 0o700 });
  const port = await freePort();
  const flags = {
    dir,
    name: "web",
    addr: `127.0.0.1:${port}`,
    delay: 0,
    rollbackWindow: windowMs,
  };
  const old = startCopy(group, from, flags);
  let next;
  const load = startLoad({
    hostname: "127.0.0.1",
    port,
    keepAliveClients: kind === "keep-alive" ? options.clients : 0,
    newConnectionClients: kind === "new-connection" ? options.clients : 0,
    rate: options.rate,
    maxRequests: 10_000_000,
    requestTimeoutMs: options.observeMs,
  });
  try {
    await old.ready(TIMEOUT_MS);
    next = startCopy(group, to, flags);
    await next.ready(TIMEOUT_MS);
    const killedAt = now();
    next.child.kill("SIGKILL");
    // New connections back to back from the kill on: the first one the old
    // process answers shows when it accepts again.
    const probe = startLoad({
      hostname: "127.0.0.1",
      port,
      keepAliveClients: 0,
      newConnectionClients: 1,
      rate: 0,
      maxRequests: 10_000_000,
      requestTimeoutMs: options.observeMs,
      onSample: (s) => s.pid === old.child.pid && probe.stop(),
    });
    const loadAverage = os.loadavg()[0];
    await sleep(options.observeMs);
    await Promise.all([load.stop(), probe.stop()]);
    const back = probe.samples.find((s) => s.pid === old.child.pid);
    return {
      ...outcome(load.samples, killedAt, now()),
      oldBack: back ? back.end - killedAt : NaN,
      load: loadAverage,
    };
  } finally {
    await load.stop();
    for (const copy of [old, next]) copy?.child.kill("SIGKILL");
    await Promise.all([old, next].map((copy) => copy?.child.exited));
    rmSync(tmp, { recursive: true, force: true });
  }
}

function outcome(
  samples: Sample[],
  killedAt: number,
  endedAt: number,
): Omit<Outcome, "load" | "oldBack"> {
  const after = samples.filter((s) => s.end >= killedAt);
  const answers = after.filter((s) => !s.error).map((s) => s.end).sort((
    a,
    b,
  ) => a - b);
  let withoutService = 0;
  let last = killedAt;
  for (const at of answers) {
    withoutService = Math.max(withoutService, at - last);
    last = Math.max(last, at);
  }
  const restored = answers.length > 0 && endedAt - last < 1000;
  if (!restored) withoutService = Math.max(withoutService, endedAt - last);
  return {
    refused: after.filter((s) => s.error === "ECONNREFUSED").length,
    lost: after.filter((s) => s.error && s.error !== "ECONNREFUSED").length,
    withoutService,
    restored,
  };
}
