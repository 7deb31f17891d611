/**
 * Reading the self-upgrade markers (`<dir>/<id>.self-upgrade`) and telling
 * whether one vouches for a live process.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import {
  decodeUpgradeMarker,
  type UpgradeMarker,
  upgradeMarkerPath,
} from "../self_upgrade/marker.ts";
import { catchesSignal, processInfo } from "./procfs.ts";

/** The marker of `id` in `dir`, or `null` when there is none or it is not one. */
export function readMarker(dir: string, id: string): UpgradeMarker | null {
  try {
    return decodeUpgradeMarker(
      readFileSync(upgradeMarkerPath(dir, id), "utf8"),
    );
  } catch {
    return null;
  }
}

/** Whether the process `marker` names still runs: same pid, same start time. */
export function markerIsLive(marker: UpgradeMarker): boolean {
  return processInfo(marker.pid)?.start === marker.start;
}

/**
 * Why `marker` does not show that the owner (`pids`) upgrades itself on a
 * signal now, or `null` when it does.
 */
export function whyNotEnabled(
  marker: UpgradeMarker | null,
  pids: number[],
): string | null {
  if (!marker) return "it advertises no self-upgrade marker";
  if (!pids.includes(marker.pid)) {
    return `its marker names pid ${marker.pid}, which does not serve its control socket`;
  }
  if (!markerIsLive(marker)) {
    return `its marker was left by an earlier process with pid ${marker.pid}`;
  }
  const signo = (constants.signals as Record<string, number>)[marker.signal];
  if (signo === undefined || !catchesSignal(marker.pid, signo)) {
    return `pid ${marker.pid} does not handle ${marker.signal} now`;
  }
  return null;
}
