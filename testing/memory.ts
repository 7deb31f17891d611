/**
 * A process's memory as `/proc/<pid>/status` reports it, for the benchmarks
 * and the tests that bound a process's growth.
 *
 * @module
 */
import { readFileSync } from "node:fs";

/** Resident set size of `pid` in KiB (`VmRSS`); NaN once it is gone. */
export function rssKiB(pid: number): number {
  return statusKiB(pid, "VmRSS");
}

/** Peak resident set size of `pid` so far in KiB (`VmHWM`); NaN once it is gone. */
export function peakRssKiB(pid: number): number {
  return statusKiB(pid, "VmHWM");
}

/**
 * The private part of `pid`'s resident set in KiB (`RssAnon`: heaps,
 * stacks), without the pages of files it maps, such as the runtime's own
 * executable; NaN once it is gone.
 */
export function privateRssKiB(pid: number): number {
  return statusKiB(pid, "RssAnon");
}

function statusKiB(pid: number, field: string): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return NaN;
  }
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  return Number(match?.[1] ?? NaN);
}
