/**
 * The live terminal view of a rolling upgrade: one row per process with the
 * share of requests it served over the last seconds, handover marks, errors
 * and a progress line. {@linkcode renderLive} is pure; {@linkcode LiveView}
 * redraws it in place on a terminal and prints plain progress lines otherwise.
 *
 * @module
 */
import process from "node:process";
import { now } from "./clock.ts";
import { ms } from "./table.ts";
import type { CopyRecord, RollingRun } from "./rolling.ts";
import { timeline } from "./stats.ts";

/** Width of the history strip in columns. */
const COLUMNS = 40;
/** Time one column of the history strip covers. */
const COLUMN_MS = 500;
/** Processes shown; older ones are summed up in one line. */
const ROWS = 4;
const LEVELS = " ▁▂▃▄▅▆▇█";

/** What a copy is doing at the moment. */
export function copyState(copy: CopyRecord, copies: CopyRecord[]): string {
  if (copy.exitCode !== undefined) return `exit ${copy.exitCode ?? "signal"}`;
  if (copy.drainedAt !== undefined) return "drained";
  if (copy.readyAt === undefined) return "starting";
  const successor = copies[copies.indexOf(copy) + 1];
  return successor?.readyAt !== undefined ? "draining" : "serving";
}

/** The lines of the live view of `run` at moment `at`. */
export function renderLive(run: RollingRun, at: number): string[] {
  const windowStart = at - COLUMNS * COLUMN_MS;
  const recent = timeline(run.samples, windowStart, at, COLUMN_MS);
  const totalPerColumn = recent.failed.map((failed, i) =>
    [...recent.served.values()].reduce((sum, counts) => sum + counts[i], failed)
  );
  const lastSecond = run.samples.filter((s) => s.end > at - 1000);
  const failed = run.samples.filter((s) => s.error !== undefined);
  const elapsed = ((at - run.startedAt) / 1000).toFixed(1);
  const upgrade = Math.min(run.copies.length - 1, run.upgrades);

  const lines = [
    `tableroll rolling upgrade · ${elapsed} s · upgrade ${
      Math.max(0, upgrade)
    } of ${run.upgrades}`,
    `${"pid".padEnd(8)} ${"runtime".padEnd(9)} ${"state".padEnd(9)} ${
      "share of requests, last 20 s (0.5 s a column)".padEnd(COLUMNS)
    }  now   served`,
  ];
  const shown = run.copies.slice(-ROWS);
  const hidden = run.copies.length - shown.length;
  if (hidden > 0) lines.push(`… ${hidden} earlier process(es)`);
  for (const copy of shown) {
    const pid = copy.servingPid ?? copy.pid;
    const counts = recent.served.get(pid) ?? [];
    const strip = Array.from({ length: COLUMNS }, (_, i) => {
      const total = totalPerColumn[i];
      if (!total || !counts[i]) return total ? "·" : " ";
      return LEVELS[Math.max(1, Math.round((counts[i] / total) * 8))];
    }).join("");
    const lastShare = share(
      lastSecond.filter((s) => s.pid === pid).length,
      lastSecond.length,
    );
    const served = run.samples.filter((s) => s.pid === pid).length;
    lines.push(
      `${String(pid).padEnd(8)} ${copy.runtime.padEnd(9)} ${
        copyState(copy, run.copies).padEnd(9)
      } ${strip}  ${lastShare.padStart(4)}  ${served.toLocaleString("en-US")}`,
    );
  }
  lines.push(`${" ".repeat(29)}${handoverMarks(run, windowStart)}`);
  lines.push(
    `requests ${
      run.samples.length.toLocaleString("en-US")
    } · ${lastSecond.length} req/s · failed ${failed.length}${
      failed.length ? ` (${errorSummary(failed.map((s) => s.error!))})` : ""
    }`,
  );
  for (const h of run.handovers.slice(-3)) {
    lines.push(
      `handover #${h.index}: ${h.from.servingPid} → ${h.to.servingPid} ` +
        `READY after ${ms(h.to.readyAt! - h.to.startedAt)}, old DRAINED after ${
          ms(h.from.drainedAt! - h.to.startedAt)
        }`,
    );
  }
  return lines;
}

/** One line of progress for logs that are not a terminal. */
export function renderProgress(run: RollingRun, at: number): string {
  const failed = run.samples.filter((s) => s.error !== undefined).length;
  const serving = run.copies.filter((c) =>
    copyState(c, run.copies) === "serving"
  ).map((c) => `${c.servingPid}/${c.runtime}`);
  return `[${
    ((at - run.startedAt) / 1000).toFixed(1)
  } s] handovers ${run.handovers.length}/${run.upgrades}` +
    ` · requests ${run.samples.length} · failed ${failed} · serving ${
      serving.join(", ") || "-"
    }`;
}

function handoverMarks(run: RollingRun, windowStart: number): string {
  const marks = Array.from({ length: COLUMNS }, () => " ");
  for (const copy of run.copies.slice(1)) {
    const column = Math.floor((copy.startedAt - windowStart) / COLUMN_MS);
    if (column >= 0 && column < COLUMNS) marks[column] = "▲";
  }
  return `${marks.join("")}  ▲ = new copy started`;
}

function share(part: number, total: number): string {
  return total ? `${Math.round((100 * part) / total)}%` : "-";
}

function errorSummary(reasons: string[]): string {
  const counts = new Map<string, number>();
  for (const r of reasons) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].map(([r, n]) => `${n}× ${r}`).join(", ");
}

/** Redraws the view of a run until {@linkcode LiveView.stop}. */
export class LiveView {
  readonly #run: RollingRun;
  readonly #tty: boolean;
  readonly #timer: ReturnType<typeof setInterval>;
  #drawn = 0;

  /** Starts drawing `run`: in place on a terminal, progress lines otherwise. */
  constructor(run: RollingRun) {
    this.#run = run;
    this.#tty = process.stdout.isTTY === true;
    if (this.#tty) process.stdout.write("\x1b[?25l");
    this.#timer = setInterval(() => this.draw(), this.#tty ? 200 : 1000);
  }

  /** Draws the current state once. */
  draw(): void {
    if (!this.#tty) {
      process.stdout.write(renderProgress(this.#run, now()) + "\n");
      return;
    }
    const lines = renderLive(this.#run, now());
    const up = this.#drawn ? `\x1b[${this.#drawn}A` : "";
    process.stdout.write(`${up}\x1b[J${lines.join("\n")}\n`);
    this.#drawn = lines.length;
  }

  /** Draws a last time and gives the terminal back. */
  stop(): void {
    clearInterval(this.#timer);
    this.draw();
    if (this.#tty) process.stdout.write("\x1b[?25h");
  }
}
