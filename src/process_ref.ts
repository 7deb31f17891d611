/**
 * One process, named for good: a pidfd where the kernel has `pidfd_open`
 * (Linux 5.3), else its pid plus its start time, so that a pid reused by a
 * new process is not mistaken for the one that died. Liveness is judged by
 * the kernel, never by talking to the process.
 *
 * @module
 */
import { UnsupportedSyscallError } from "../ffi/errors.ts";
import { close, readyNow } from "../ffi/fd.ts";
import { POLLIN } from "../ffi/libc.ts";
import { pidfdOpen, processStat } from "../ffi/proc.ts";
import { delay, waitReadable } from "../ffi/wait.ts";
import { sleep } from "./coordination.ts";

/** A process observed alive once; {@linkcode forget} it when done. */
export interface ProcessRef {
  /** Its pid. */
  pid: number;
  /** Its start time in clock ticks since boot. */
  startTime: bigint;
  /** A pidfd for it, readable once it has exited; absent without `pidfd_open`. */
  pidfd?: number;
}

let pidfdsWork = true;

/**
 * Names the running process `pid`; `null` if it is already dead. A pid of 0
 * (`SO_PEERCRED` of a process in a pid namespace this one cannot see) names
 * a process that is always taken to be alive: nothing about it can be known.
 */
export function observe(pid: number): ProcessRef | null {
  if (pid <= 0) return { pid: 0, startTime: 0n };
  const stat = processStat(pid);
  if (stat === null || isDead(stat.state)) return null;
  const process: ProcessRef = { pid, startTime: stat.startTime };
  if (pidfdsWork) {
    try {
      process.pidfd = pidfdOpen(pid);
    } catch (err) {
      if (err instanceof UnsupportedSyscallError) pidfdsWork = false;
      else if ((err as { code?: string }).code === "ESRCH") return null;
      else throw err;
    }
  }
  // The pid may have been reused between the two looks: check it again.
  try {
    if (isAlive(process)) return process;
  } catch (err) {
    forget(process);
    throw err;
  }
  forget(process);
  return null;
}

/** Whether `process` still runs (a zombie, or a new process with its pid, does not count). */
export function isAlive(process: ProcessRef): boolean {
  if (process.pid <= 0) return true;
  if (process.pidfd !== undefined && readyNow(process.pidfd, POLLIN) !== 0) {
    return false;
  }
  const stat = processStat(process.pid);
  return stat !== null && !isDead(stat.state) &&
    stat.startTime === process.startTime;
}

function isDead(state: string): boolean {
  return state === "Z" || state === "X";
}

/**
 * Resolves `true` once `process` has died, `false` if it still runs after
 * `ms`. A process killed closes its sockets a moment before it is gone, so a
 * peer that hung up is given this long to finish dying.
 */
export async function diesWithin(
  process: ProcessRef,
  ms: number,
): Promise<boolean> {
  if (process.pidfd !== undefined) {
    try {
      await waitReadable(process.pidfd, { signal: AbortSignal.timeout(ms) });
    } catch {
      return !isAlive(process);
    }
    return true;
  }
  for (const end = Date.now() + ms; isAlive(process);) {
    if (Date.now() >= end) return false;
    await delay(5);
  }
  return true;
}

/** Releases what names `process` (its pidfd). Idempotent. */
export function forget(process: ProcessRef | null | undefined): void {
  if (process?.pidfd === undefined) return;
  close(process.pidfd);
  process.pidfd = undefined;
}

/** How often {@linkcode exited} looks at `/proc` without a pidfd. */
const EXIT_POLL_MS = 5;

/**
 * Resolves once `process` has died; rejects with the signal's reason if
 * `signal` aborts first. Woken through the pidfd within a few milliseconds
 * of the death (a wait that does not keep this process alive), or by a look
 * at `/proc` every 5 ms on a kernel without `pidfd_open`.
 *
 * @example
 * ```ts ignore
 * const successor = observe(pid);
 * if (successor) await exited(successor, AbortSignal.timeout(5_000));
 * ```
 */
export async function exited(
  process: ProcessRef,
  signal: AbortSignal,
): Promise<void> {
  if (process.pidfd !== undefined) {
    await waitReadable(process.pidfd, { ref: false, signal });
    return;
  }
  while (isAlive(process)) {
    await sleep(EXIT_POLL_MS, signal, "watching a process");
  }
}
