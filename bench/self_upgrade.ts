/**
 * Self-upgrade against an external start: how long from `SIGHUP` to the new
 * copy's `READY` (the owner starts it with `upgrade()`), against spawning the
 * same copy from outside to its `READY` (the baseline), in the same run.
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { now, sleep } from "../testing/clock.ts";
import { commandLine } from "../testing/copies.ts";
import type { Child, ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { formatTable, ms, ratio } from "../testing/table.ts";
import { median } from "../testing/stats.ts";

const TIMEOUT_MS = 60_000;

/**
 * For each runtime, `rounds` times: an owner of `examples/hello.ts`, a copy
 * started from outside (spawn → `READY`), then `SIGHUP` to that copy
 * (`SIGHUP` → the next copy's `READY`). Medians.
 */
export async function selfUpgradeStartup(
  group: ProcessGroup,
  runtimes: ("deno" | "bun")[],
  rounds: number,
): Promise<string> {
  const rows: string[][] = [];
  for (const runtime of runtimes) {
    const external: number[] = [];
    const self: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const [outside, sighup] = await oneRound(group, runtime);
      external.push(outside);
      self.push(sighup);
    }
    const [e, s] = [median(external), median(self)];
    rows.push([runtime, ms(e), ms(s), ratio(s, e)]);
  }
  return formatTable([
    "runtime",
    "external: spawn → READY",
    "self-upgrade: SIGHUP → READY",
    "self / external",
  ], rows);
}

async function oneRound(
  group: ProcessGroup,
  runtime: "deno" | "bun",
): Promise<[number, number]> {
  const tmp = mkdtempSync(join(tmpdir(), "tableroll-bench-"));
  const args = [
    "--dir",
    join(tmp, "coordination"),
    "--addr",
    `127.0.0.1:${await freePort()}`,
    "--upgrade-on-sighup",
  ];
  const start = () =>
    group.spawn(...commandLine(runtime, "examples/hello.ts", args));
  let upgraded: number | undefined;
  try {
    const first = start();
    await first.waitForLine(/^READY /, TIMEOUT_MS);
    const second = start();
    const ready = await second.waitForLine(/^READY /, TIMEOUT_MS);
    const external = ready.at - second.startedAt;
    await first.exited;
    const sent = now();
    process.kill(second.pid, "SIGHUP");
    const next = await readyOtherThan(second, second.pid);
    upgraded = Number(next.text.split(" ")[1]);
    await second.exited;
    return [external, next.at - sent];
  } finally {
    if (upgraded !== undefined) await stopByPid(upgraded);
    await group.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The first `READY` line of a process other than `pid` on `child`'s stdout. */
function readyOtherThan(child: Child, pid: number) {
  return child.waitForLine(
    new RegExp(`^READY (?!${pid}$)\\d+$`),
    TIMEOUT_MS,
  );
}

/** SIGTERM to a copy the group did not start (its parent exited), then waits until it is gone. */
async function stopByPid(pid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  process.kill(pid, "SIGTERM");
  const deadline = now() + 5000;
  while (alive() && now() < deadline) await sleep(20);
  if (alive()) process.kill(pid, "SIGKILL");
}
