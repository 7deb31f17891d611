/**
 * The log of refused control connections: one line for the first refusal,
 * one summary a window for those after it, nothing paid for a line that is
 * not written, and nothing left running once the upgrader stops.
 */
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { RefusalLog } from "../src/refusal_log.ts";
import type { Logger } from "../src/events.ts";

const WINDOW_MS = 200;

/** A logger that keeps its `warn` lines. */
function recording(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const ignore = () => {};
  return {
    lines,
    debug: ignore,
    info: ignore,
    warn: (message: string) => lines.push(message),
    error: ignore,
  };
}

test(`refusal log (${runtime}): the first refusal in full, the rest as one summary a window, then in full again`, async () => {
  const logger = recording();
  const stopping = new AbortController();
  const log = new RefusalLog(logger, stopping.signal, WINDOW_MS);
  let reasons = 0;
  const refuse = (pid: number) =>
    log.refused(pid, () => `refused pid ${pid} (reason ${++reasons})`);
  try {
    refuse(7);
    assertEquals(logger.lines, ["refused pid 7 (reason 1)"]);
    for (let i = 0; i < 1000; i++) refuse(8 + (i % 2));
    assertEquals(reasons, 1, "a counted refusal's reason is never made");
    await until(() => logger.lines.length === 2, "the summary");
    assertEquals(
      logger.lines[1],
      `tableroll: refused 1000 more connections on the control socket in the last ${
        WINDOW_MS / 1000
      } s, from pids 8, 9`,
    );
    // A window with refusals opens another: still no line per refusal.
    refuse(8);
    await until(() => logger.lines.length === 3, "the second summary");
    assert(
      logger.lines[2].includes("refused 1 more connection on") &&
        logger.lines[2].endsWith("from pid 8"),
      logger.lines[2],
    );
    // A window without any closes; the next refusal is told in full.
    await new Promise((resolve) => setTimeout(resolve, 3 * WINDOW_MS));
    assertEquals(logger.lines.length, 3);
    refuse(10);
    assertEquals(logger.lines[3], "refused pid 10 (reason 2)");
  } finally {
    stopping.abort();
  }
});

test(`refusal log (${runtime}): stopping logs what was counted at once; a summary names five pids at most`, () => {
  const logger = recording();
  const stopping = new AbortController();
  const log = new RefusalLog(logger, stopping.signal, 60_000);
  for (let pid = 1; pid <= 8; pid++) log.refused(pid, () => `refused ${pid}`);
  stopping.abort();
  assertEquals(logger.lines, [
    "refused 1",
    "tableroll: refused 7 more connections on the control socket in the last 60 s, from pids 2, 3, 4, 5, 6 and others",
  ]);
});

test(`refusal log (${runtime}): a logger that throws at the summary does not end the process`, async () => {
  const stopping = new AbortController();
  let summaries = 0;
  const logger: Logger = {
    ...recording(),
    warn: (message: string) => {
      if (message.startsWith("tableroll: refused 1 more")) {
        summaries++;
        throw new Error("the logger broke");
      }
    },
  };
  const log = new RefusalLog(logger, stopping.signal, WINDOW_MS);
  try {
    log.refused(1, () => "first");
    log.refused(1, () => "counted");
    await until(() => summaries === 1, "the summary from the timer");
    log.refused(1, () => "counted");
  } finally {
    stopping.abort(); // the summary from the abort listener throws too
  }
  assertEquals(summaries, 2);
});
