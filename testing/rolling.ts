/**
 * A rolling upgrade under load: start the service, send bounded loopback
 * traffic, replace the serving copy N times by starting independent new
 * copies, then stop the last one. Progress is kept in a {@linkcode RollingRun}
 * that a live view can read while it runs.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Copy, type Runtime, startCopy } from "./copies.ts";
import { now, sleep } from "./clock.ts";
import { type Load, type LoadOptions, type Sample, startLoad } from "./load.ts";
import type { ProcessGroup } from "./processes.ts";
import type { Interval } from "./stats.ts";

/** The life of one copy, on the `now()` clock. */
export interface CopyRecord {
  /** Spawned pid. */
  pid: number;
  /** What runs it. */
  runtime: Runtime;
  /** When it was spawned. */
  startedAt: number;
  /** When it printed `READY`. */
  readyAt?: number;
  /** The pid it printed (the one named in its responses). */
  servingPid?: number;
  /** When it printed `DRAINED`. */
  drainedAt?: number;
  /** When it exited. */
  exitedAt?: number;
  /** Its exit status (`null` when a signal ended it). */
  exitCode?: number | null;
}

/** One handover from `from` to `to`. */
export interface Handover extends Interval {
  /** 1-based number of the upgrade. */
  index: number;
  /** The copy that handed its sockets over. */
  from: CopyRecord;
  /** The copy that took them. */
  to: CopyRecord;
}

/** Options of {@linkcode runRollingUpgrade}. */
export interface RollingOptions {
  /** Where the processes run; the caller closes it. */
  group: ProcessGroup;
  /** The service, a path below the repository root (default `examples/hello.ts`). */
  script?: string;
  /** What runs copy number `i` (0 is the first). */
  runtimeOf: (i: number) => Runtime;
  /**
   * The runtime binary of copy number `i`, when not the one `runtimeOf`
   * implies (another version of the runtime, say).
   */
  binaryOf?: (i: number) => string | undefined;
  /** How many times the serving copy is replaced. */
  upgrades: number;
  /** Steady time before the first upgrade, between upgrades, and after the last. */
  intervalMs: number;
  /** Response delay of the service in milliseconds. */
  delay: number;
  /** Port to serve on; a free one when absent. */
  port?: number;
  /** The traffic. */
  load: Omit<LoadOptions, "hostname" | "port">;
  /** How long a copy may take to print `READY`, and the old one `DRAINED`. */
  timeoutMs?: number;
}

/** A rolling upgrade in progress or finished. */
export interface RollingRun {
  /** When it started. */
  startedAt: number;
  /** When it ended (load stopped and every copy gone); absent while running. */
  endedAt?: number;
  /** Every copy started, in order. */
  copies: CopyRecord[];
  /** Completed handovers. */
  handovers: Handover[];
  /** Every request so far. */
  samples: Sample[];
  /** Upgrades asked for. */
  upgrades: number;
  /** Temporary directory holding the coordination directory; removed at the end. */
  tmp: string;
  /** What went wrong besides failed requests (timeouts, bad exits). */
  problems: string[];
  /** Resolves when it has ended; never rejects (see `problems`). */
  done: Promise<void>;
}

/** Starts a rolling upgrade; read the returned run while it goes on. */
export function runRollingUpgrade(options: RollingOptions): RollingRun {
  const run: RollingRun = {
    startedAt: now(),
    copies: [],
    handovers: [],
    samples: [],
    upgrades: options.upgrades,
    tmp: mkdtempSync(join(tmpdir(), "tableroll-demo-")),
    problems: [],
    done: Promise.resolve(),
  };
  run.done = drive(options, run);
  return run;
}

async function drive(options: RollingOptions, run: RollingRun): Promise<void> {
  const timeout = options.timeoutMs ?? 30_000;
  const port = options.port ?? await freePort();
  const flags = {
    // A directory that does not exist yet: the service creates it with 0700.
    dir: join(run.tmp, "coordination"),
    name: "web",
    addr: `127.0.0.1:${port}`,
    delay: options.delay,
  };
  const start = (i: number) => {
    const copy = startCopy(
      options.group,
      options.runtimeOf(i),
      flags,
      options.script,
      options.binaryOf?.(i),
    );
    const record: CopyRecord = {
      pid: copy.child.pid,
      runtime: copy.runtime,
      startedAt: copy.child.startedAt,
    };
    copy.child.exited.then((exit) => {
      record.exitedAt = exit.at;
      record.exitCode = exit.code;
    });
    run.copies.push(record);
    return { copy, record };
  };
  const awaitReady = async ({ copy, record }: Started) => {
    const line = await copy.ready(timeout);
    record.readyAt = line.at;
    record.servingPid = Number(line.text.split(" ")[1]);
  };
  const awaitGone = async ({ copy, record }: Started) => {
    record.drainedAt = (await copy.drained(timeout)).at;
    const exit = await withTimeout(copy.child.exited, timeout, "exit");
    if (exit.code !== 0) {
      run.problems.push(
        `process ${record.pid} exited with ${
          exit.signal ?? `status ${exit.code}`
        }` +
          `${copy.child.stderrTail ? `:\n${copy.child.stderrTail}` : ""}`,
      );
    }
  };

  let load: Load | undefined;
  try {
    let current = start(0);
    await awaitReady(current);
    load = startLoad({ ...options.load, hostname: "127.0.0.1", port });
    run.samples = load.samples;
    for (let i = 1; i <= options.upgrades; i++) {
      await sleep(options.intervalMs);
      const next = start(i);
      await awaitReady(next);
      await awaitGone(current);
      run.handovers.push({
        index: i,
        from: current.record,
        to: next.record,
        start: next.record.startedAt,
        end: Math.max(current.record.drainedAt!, current.record.exitedAt!),
      });
      current = next;
    }
    await sleep(options.intervalMs);
    await load.stop();
    current.copy.child.kill("SIGTERM");
    await awaitGone(current);
  } catch (err) {
    run.problems.push(err instanceof Error ? err.message : String(err));
  } finally {
    await load?.stop();
    await options.group.close();
    rmSync(run.tmp, { recursive: true, force: true });
    run.endedAt = now();
  }
}

type Started = { copy: Copy; record: CopyRecord };

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no ${what} within ${ms} ms`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}
