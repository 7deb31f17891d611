/**
 * `tableroll upgrade DIR`: asks an owner that upgrades itself on a signal to
 * do so, and waits until a new owner is recorded or the attempt failed.
 *
 * @module
 */
import process from "node:process";
import type { UpgradeMarker } from "../self_upgrade/marker.ts";
import { type Command, EXIT, type Output, UsageError } from "./command.ts";
import { formatDuration } from "./format.ts";
import { inspectDirectory } from "./inspect.ts";
import { readMarker, whyNotEnabled } from "./marker.ts";

const DEFAULT_TIMEOUT_S = 90;
const POLL_MS = 50;

/** How an upgrade ended, as `--json` prints it. */
export type UpgradeOutcome =
  | { result: "upgraded"; oldPid: number; newPid: number; durationMs: number }
  | { result: "failed"; oldPid: number; reason: string; durationMs: number }
  | { result: "timeout"; oldPid: number; durationMs: number };

/** The `upgrade` command. */
export const upgrade: Command = {
  name: "upgrade",
  summary: "ask the owner to upgrade itself and wait for the new owner",
  help: `usage: tableroll upgrade DIR [--timeout SECONDS] [--json]

Asks the owner of DIR to start a new copy of itself, by sending it the signal
it advertised (SIGHUP for upgradeOnSignal(), as examples/hello.ts
--upgrade-on-sighup does), and waits until the new copy is recorded as the
owner. Prints the old and new pid and the time taken. The owner advertises
self-upgrade in DIR/<id>.self-upgrade; an owner without it (a Go tableroll
process, or one that did not enable it) gets no signal: upgrade it by
starting a new copy.

Options:
  --timeout SECONDS  how long to wait for the new owner (default ${DEFAULT_TIMEOUT_S})
  --json             print the outcome as one JSON object
  -h, --help         show this help

Exit status:
  0  a new owner is recorded
  1  the upgrade failed (the owner reported why and still serves), or the
     directory cannot be read
  2  wrong command line
  3  no live owner
  4  no new owner within the timeout, or a handover was already under way
  5  the owner has not enabled self-upgrade`,
  options: { timeout: { type: "string" } },
  async run(dir, flags, output) {
    const timeoutMs = parseTimeout(flags.timeout as string | undefined);
    const before = inspectDirectory(dir);
    const fail = (code: number, message: string) => {
      output.err(`tableroll upgrade: ${message}`);
      return code;
    };
    const owner = before.owner;
    if (!owner?.alive) {
      return fail(
        EXIT.noOwner,
        `no live owner in ${dir}: start the service instead`,
      );
    }
    const marker = readMarker(dir, owner.id);
    const refusal = whyNotEnabled(marker, owner.pids);
    if (refusal) {
      return fail(
        EXIT.notEnabled,
        `the owner (id ${owner.id}, pid ${
          owner.pids.join(",")
        }) has not enabled self-upgrade: ${refusal}; ` +
          "enable it with upgradeOnSignal(upgrader), or upgrade by starting a new copy",
      );
    }
    if (before.handover) {
      return fail(
        EXIT.busy,
        `a handover is already under way (pid ${before.handover.successorPid} is taking over): wait for it, then look again with tableroll status`,
      );
    }
    const outcome = await signalAndWait(dir, owner.id, marker!, timeoutMs);
    return report(outcome, timeoutMs, flags.json, output);
  },
};

function parseTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_TIMEOUT_S * 1000;
  const seconds = Number(text);
  if (!(seconds > 0)) {
    throw new UsageError(
      `--timeout takes a positive number of seconds, not ${
        JSON.stringify(text)
      }`,
    );
  }
  return seconds * 1000;
}

/** Sends the advertised signal, then watches the directory and the marker. */
async function signalAndWait(
  dir: string,
  oldId: string,
  marker: UpgradeMarker,
  timeoutMs: number,
): Promise<UpgradeOutcome> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const oldPid = marker.pid;
  process.kill(oldPid, marker.signal as NodeJS.Signals);
  let goneBefore = false;
  while (elapsed() < timeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const now = inspectDirectory(dir);
    if (now.owner?.alive && now.owner.id !== oldId) {
      return {
        result: "upgraded",
        oldPid,
        newPid: now.owner.pids[0],
        durationMs: elapsed(),
      };
    }
    const latest = readMarker(dir, oldId);
    if (latest && latest.failed > marker.failed) {
      return {
        result: "failed",
        oldPid,
        reason: latest.lastFailure ?? "the owner did not say why",
        durationMs: elapsed(),
      };
    }
    // An owner that stepped down may exit before its successor records
    // itself; the successor holds the lock until it has. One look can still
    // straddle the successor's steps (the lock read free before it took it,
    // the record read while it rewrites it), so two looks in a row decide.
    const gone = !now.owner?.alive && !now.lock;
    if (gone && goneBefore) {
      return {
        result: "failed",
        oldPid,
        reason:
          `the owner (pid ${oldPid}) is gone and no new owner is recorded`,
        durationMs: elapsed(),
      };
    }
    goneBefore = gone;
  }
  return { result: "timeout", oldPid, durationMs: elapsed() };
}

function report(
  outcome: UpgradeOutcome,
  timeoutMs: number,
  json: boolean,
  output: Output,
): number {
  if (json) output.out(JSON.stringify(outcome));
  const took = formatDuration(outcome.durationMs);
  switch (outcome.result) {
    case "upgraded":
      if (!json) {
        output.out(
          `upgraded: pid ${outcome.oldPid} -> pid ${outcome.newPid} in ${took}`,
        );
      }
      return EXIT.ok;
    case "failed":
      output.err(
        `tableroll upgrade: failed after ${took}: ${outcome.reason}`,
      );
      return EXIT.failed;
    case "timeout":
      output.err(
        `tableroll upgrade: no new owner within ${
          formatDuration(timeoutMs)
        }; pid ${outcome.oldPid} may still be upgrading: see tableroll status`,
      );
      return EXIT.busy;
  }
}
