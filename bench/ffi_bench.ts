/**
 * Costs of the FFI layer, each next to a baseline measured in the same run:
 *
 * - one `sendWithFds` + `receiveWithFds` exchange of 1 and of 600
 *   descriptors (600 take three messages) against a plain `write` + `read`
 *   of the same bytes on the same socketpair;
 * - the reaction time of `waitReadable`, from a write in another process to
 *   the wait resolving (both read `CLOCK_MONOTONIC`), woken by `SIGIO`
 *   (`exclusive: true`) and by the sweep timer, against a blocking `read` of
 *   the same write;
 * - the time from killing a child to `waitReadable` on its pidfd resolving,
 *   against the runtime's own child `exit` event;
 * - the CPU a `waitReadable` uses while it waits 10 s (either way), against
 *   the same 10 s with nothing pending but a timer.
 *
 * Usage: `deno run -A bench/ffi_bench.ts` or `bun bench/ffi_bench.ts`;
 * `FFI_BENCH_IDLE_SECONDS` shortens the idle measurement for a quick run.
 *
 * @module
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  accept,
  close,
  connect,
  listenOn,
  MAX_FDS_PER_MESSAGE,
  memfd,
  monotonicNanos,
  openSocket,
  pidfdOpen,
  read,
  receiveWithFds,
  sendWithFds,
  socketPair,
  waitReadable,
  write,
  writeAll,
} from "../ffi/mod.ts";

const IDLE_SECONDS = Number(process.env.FFI_BENCH_IDLE_SECONDS ?? 10);
const SAMPLES = 2000;
/** Rounds each exchange measurement is split into, alternating the two kinds. */
const ROUNDS = 9;
const BYTE = new Uint8Array([1]);

if (process.argv.at(-2) === "writer") writer(process.argv.at(-1)!);
else await main();

/** The other process: answers each byte with the time it writes the answer. */
function writer(path: string): void {
  const sock = openSocket("unix", "stream");
  connect(sock, { family: "unix", path });
  const stamp = new DataView(new ArrayBuffer(8));
  for (;;) {
    const got = read(sock, 1);
    if (!got || got.length === 0) break;
    stamp.setBigInt64(0, monotonicNanos(), true);
    writeAll(sock, new Uint8Array(stamp.buffer));
  }
  close(sock);
}

async function main(): Promise<void> {
  const runtime = process.versions.bun
    ? `Bun ${process.versions.bun}`
    : `Deno ${process.versions.deno}`;
  console.log(`FFI layer on ${runtime} (${process.arch})\n`);

  const rows: string[][] = [["measure", "FFI", "baseline", "ratio"]];
  for (const count of [1, 600]) {
    const iterations = count === 1 ? 20_000 : 300;
    const { passing, plain } = exchangeCosts(count, iterations);
    rows.push([
      `send+receive ${count} fd${count > 1 ? "s" : ""} (µs/exchange)`,
      passing.toFixed(2),
      plain.toFixed(2),
      `${(passing / plain).toFixed(2)}×`,
    ]);
  }

  const times = await reactionTimes();
  for (const kind of ["SIGIO", "sweep"] as const) {
    for (const p of [50, 99]) {
      const [w, b] = [
        percentile(times[kind], p),
        percentile(times.blocking, p),
      ];
      rows.push([
        `reaction p${p} (${kind}), write in another process → here (µs)`,
        w.toFixed(1),
        b.toFixed(1),
        `${signed(w - b, 1)} µs`,
      ]);
    }
  }

  const exits = await exitReactionTimes();
  for (const p of [50, 99]) {
    const [w, b] = [percentile(exits.pidfd, p), percentile(exits.event, p)];
    rows.push([
      `pidfd p${p}, kill → waitReadable resolves (ms)`,
      w.toFixed(2),
      b.toFixed(2),
      `${signed(w - b, 2)} ms`,
    ]);
  }

  const timerOnly = await idleCpu("none");
  for (const kind of ["SIGIO", "sweep"] as const) {
    const idle = await idleCpu(kind);
    rows.push([
      `CPU while waiting ${IDLE_SECONDS} s (${kind}, % of one core)`,
      idle.toFixed(3),
      timerOnly.toFixed(3),
      `${signed(idle - timerOnly, 3)} pts`,
    ]);
  }
  printTable(rows);
  console.log(
    "\nbaselines: write+read of the same bytes on the same socketpair; a blocking read of the same write; " +
      "the child's exit event; a process with only a timer pending",
  );
}

/**
 * Median µs per exchange of `count` descriptors (the receiver closing what
 * it got), and of a plain `write` + `read` of the same bytes in as many
 * messages, on the same socketpair. The two alternate over {@linkcode ROUNDS}
 * rounds so that changes in the machine's load hit both alike.
 */
function exchangeCosts(
  count: number,
  iterations: number,
): { passing: number; plain: number } {
  const [a, b] = socketPair();
  const fds = Array.from({ length: count }, (_, i) => memfd(`bench-${i}`));
  const messages = Math.ceil(count / MAX_FDS_PER_MESSAGE);
  const passing = (n: number) => {
    for (let i = 0; i < n; i++) {
      for (let off = 0; off < count; off += MAX_FDS_PER_MESSAGE) {
        sendWithFds(a, BYTE, fds.slice(off, off + MAX_FDS_PER_MESSAGE));
        const message = receiveWithFds(b, 1, MAX_FDS_PER_MESSAGE)!;
        for (const fd of message.fds) close(fd);
      }
    }
  };
  const plain = (n: number) => {
    for (let i = 0; i < n; i++) {
      for (let m = 0; m < messages; m++) {
        write(a, BYTE);
        read(b, 1);
      }
    }
  };
  try {
    const perRound = Math.ceil(iterations / ROUNDS);
    passing(perRound); // warm-up
    plain(perRound);
    const times = { passing: [] as number[], plain: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      times.passing.push(timed(passing, perRound));
      times.plain.push(timed(plain, perRound));
    }
    return { passing: median(times.passing), plain: median(times.plain) };
  } finally {
    [a, b, ...fds].forEach(close);
  }
}

/** µs per iteration of `run`. */
function timed(run: (n: number) => void, iterations: number): number {
  const start = performance.now();
  run(iterations);
  return ((performance.now() - start) * 1000) / iterations;
}

function median(values: number[]): number {
  return percentile([...values].sort((x, y) => x - y), 50);
}

/**
 * Microseconds from the writer process's write to this process noticing it:
 * `waitReadable` resolving (woken by `SIGIO` or by the sweep timer), or a
 * blocking `read` returning.
 */
async function reactionTimes(): Promise<
  { SIGIO: number[]; sweep: number[]; blocking: number[] }
> {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
  const path = join(dir, "writer.sock");
  const listener = listenOn({ family: "unix", path });
  const script = fileURLToPath(import.meta.url);
  const child = spawn(
    process.execPath,
    process.versions.bun
      ? [script, "writer", path]
      : ["run", "-A", script, "writer", path],
    { stdio: "inherit" },
  );
  let conn = -1;
  try {
    await waitReadable(listener, { exclusive: true });
    conn = accept(listener)!;
    const sample = async (kind: "SIGIO" | "sweep" | "blocking") => {
      writeAll(conn, BYTE);
      if (kind !== "blocking") {
        await waitReadable(conn, { exclusive: kind === "SIGIO" });
      }
      let noticed = monotonicNanos();
      const reply = read(conn, 8)!;
      if (kind === "blocking") noticed = monotonicNanos();
      const written = new DataView(reply.buffer, reply.byteOffset, 8)
        .getBigInt64(0, true);
      return Number(noticed - written) / 1000;
    };
    const times = {
      SIGIO: [] as number[],
      sweep: [] as number[],
      blocking: [] as number[],
    };
    // Interleaved, so that drift in the machine's load affects all alike.
    for (let i = -SAMPLES / 10; i < SAMPLES; i++) {
      for (const kind of ["SIGIO", "sweep", "blocking"] as const) {
        const t = await sample(kind);
        if (i >= 0) times[kind].push(t); // the first tenth warms up
      }
    }
    for (const list of Object.values(times)) list.sort((x, y) => x - y);
    return times;
  } finally {
    if (conn >= 0) close(conn);
    close(listener);
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Milliseconds from `kill` of a sleeping child to this process noticing its
 * exit: `waitReadable` on its pidfd resolving, and the runtime's `exit` event
 * of the same child.
 */
async function exitReactionTimes(): Promise<
  { pidfd: number[]; event: number[] }
> {
  const pidfd: number[] = [];
  const event: number[] = [];
  for (let i = 0; i < 30; i++) {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    const fd = pidfdOpen(child.pid!);
    try {
      const start = performance.now();
      const exited = new Promise<number>((resolve) =>
        child.on("exit", () => resolve(performance.now() - start))
      );
      const waited = waitReadable(fd).then(() => performance.now() - start);
      child.kill("SIGKILL");
      pidfd.push(await waited);
      event.push(await exited);
    } finally {
      close(fd);
    }
  }
  return {
    pidfd: pidfd.sort((x, y) => x - y),
    event: event.sort((x, y) => x - y),
  };
}

/**
 * Percent of one core this process uses over `IDLE_SECONDS`: with a
 * `waitReadable` pending (woken by `SIGIO` or swept) that data ends after
 * that time, or with only the timer.
 */
async function idleCpu(wait: "SIGIO" | "sweep" | "none"): Promise<number> {
  // Let the collector finish with what the measurements before left behind.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const [a, b] = socketPair();
  try {
    const before = process.cpuUsage();
    const start = performance.now();
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        writeAll(a, BYTE);
        resolve();
      }, IDLE_SECONDS * 1000)
    );
    await (wait === "none"
      ? timer
      : waitReadable(b, { exclusive: wait === "SIGIO" }));
    const used = process.cpuUsage(before);
    const wallMicros = (performance.now() - start) * 1000;
    return (100 * (used.user + used.system)) / wallMicros;
  } finally {
    [a, b].forEach(close);
  }
}

function signed(value: number, digits: number): string {
  return (value >= 0 ? "+" : "") + value.toFixed(digits);
}

function percentile(sorted: number[], p: number): number {
  return sorted[
    Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  ];
}

function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, c) =>
    Math.max(...rows.map((r) => r[c].length))
  );
  for (const [i, row] of rows.entries()) {
    console.log(
      row.map((cell, c) =>
        c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])
      ).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}
