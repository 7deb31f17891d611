/**
 * One process, named for good: its pid plus its start time, so that a pid
 * reused by a new process is not mistaken for the one that died. Liveness is
 * judged from `/proc`, never by talking to the process.
 *
 * @module
 */
import { processStat } from "../ffi/mod.ts";

/** A process observed alive once. */
export interface ProcessRef {
  /** Its pid. */
  pid: number;
  /** Its start time in clock ticks since boot. */
  startTime: bigint;
}

/**
 * Names the running process `pid`; `null` if it is already dead. A pid of 0
 * (`SO_PEERCRED` of a process in a pid namespace this one cannot see) names
 * a process that is always taken to be alive: nothing about it can be known.
 */
export function observe(pid: number): ProcessRef | null {
  if (pid <= 0) return { pid: 0, startTime: 0n };
  const stat = processStat(pid);
  if (stat === null || isDead(stat.state)) return null;
  return { pid, startTime: stat.startTime };
}

/** Whether `process` still runs (a zombie, or a new process with its pid, does not count). */
export function isAlive(process: ProcessRef): boolean {
  if (process.pid <= 0) return true;
  const stat = processStat(process.pid);
  return stat !== null && !isDead(stat.state) &&
    stat.startTime === process.startTime;
}

function isDead(state: string): boolean {
  return state === "Z" || state === "X";
}

/**
 * Resolves `true` once `process` has died, `false` if it still runs after
 * `ms`. A process killed closes its sockets a moment before it is gone from
 * `/proc`, so a peer that hung up is given this long to finish dying.
 */
export async function diesWithin(
  process: ProcessRef,
  ms: number,
): Promise<boolean> {
  for (const end = Date.now() + ms; isAlive(process);) {
    if (Date.now() >= end) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}
