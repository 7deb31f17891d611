/**
 * The self-upgrade marker: a file `<dir>/<id>.self-upgrade` by which an
 * owner that upgrades itself on a signal says so, for `tableroll upgrade`
 * to find without connecting anywhere. It names the process (pid and start
 * time, so a marker left by a dead process cannot vouch for a new process
 * with the same pid), the signal, and the upgrades it started and that
 * failed. Go tableroll reads only `<dir>/pid` and `<dir>/<id>.sock`, so it
 * never sees this file; the wire protocol is untouched.
 *
 * This module only encodes and decodes; the owner writes the file, the
 * command line reads it.
 *
 * @module
 */

/** The marker's content. */
export interface UpgradeMarker {
  /** The owner's pid, the process to signal. */
  pid: number;
  /** Its start time, in clock ticks since boot (field 22 of `/proc/<pid>/stat`). */
  start: number;
  /** The signal that starts an upgrade, e.g. `"SIGHUP"`. */
  signal: string;
  /** Upgrades started so far. */
  started: number;
  /** Upgrades that failed so far (the owner stayed owner). */
  failed: number;
  /** Why the last failed one failed, or `null`. */
  lastFailure: string | null;
}

/** The suffix of the marker's file name. */
export const MARKER_SUFFIX = ".self-upgrade";

/** `<dir>/<id>.self-upgrade`. */
export function upgradeMarkerPath(dir: string, id: string): string {
  return `${dir}/${id}${MARKER_SUFFIX}`;
}

/** The marker as one JSON line. */
export function encodeUpgradeMarker(marker: UpgradeMarker): string {
  return JSON.stringify(marker) + "\n";
}

/** The marker in `text`, or `null` when it is not one (truncated, foreign). */
export function decodeUpgradeMarker(text: string): UpgradeMarker | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  const m = value as Partial<UpgradeMarker>;
  const count = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;
  if (
    typeof m !== "object" || m === null || !count(m.pid) ||
    !count(m.start) || typeof m.signal !== "string" || !count(m.started) ||
    !count(m.failed) ||
    !(m.lastFailure === null || typeof m.lastFailure === "string")
  ) {
    return null;
  }
  return {
    pid: m.pid!,
    start: m.start!,
    signal: m.signal,
    started: m.started!,
    failed: m.failed!,
    lastFailure: m.lastFailure,
  };
}
