import { assert, assertEquals } from "./support/assert.ts";
import { test } from "./support/harness.ts";
import { copyState, renderLive } from "../testing/live.ts";
import type { CopyRecord, RollingRun } from "../testing/rolling.ts";

const copy = (pid: number, fields: Partial<CopyRecord> = {}): CopyRecord => ({
  pid,
  runtime: "deno",
  startedAt: 0,
  ...fields,
});

test("a copy is starting, serving, draining, drained, then exited", () => {
  const old = copy(1, { readyAt: 10, servingPid: 1 });
  const next = copy(2, { startedAt: 100 });
  const copies = [old, next];
  assertEquals(copyState(next, copies), "starting");
  assertEquals(copyState(old, copies), "serving");
  next.readyAt = 150;
  assertEquals(copyState(old, copies), "draining");
  assertEquals(copyState(next, copies), "serving");
  old.drainedAt = 160;
  assertEquals(copyState(old, copies), "drained");
  old.exitCode = 0;
  assertEquals(copyState(old, copies), "exit 0");
});

test("the live view has a row per process and counts failures", () => {
  const run: RollingRun = {
    startedAt: 0,
    copies: [
      copy(1, { readyAt: 10, servingPid: 1, drainedAt: 900, exitCode: 0 }),
      copy(2, { startedAt: 500, readyAt: 600, servingPid: 2 }),
    ],
    handovers: [],
    samples: [
      { start: 100, end: 101, pid: 1, kind: "keep-alive" },
      { start: 700, end: 701, pid: 2, kind: "new-connection" },
      { start: 800, end: 801, pid: 2, kind: "keep-alive" },
      {
        start: 800,
        end: 810,
        pid: null,
        kind: "keep-alive",
        error: "ECONNRESET",
      },
    ],
    upgrades: 1,
    tmp: "",
    problems: [],
    done: Promise.resolve(),
  };
  const lines = renderLive(run, 1000);
  const row = (pid: number) => lines.find((l) => l.startsWith(`${pid} `));
  assert(row(1)?.includes("exit 0"));
  assert(row(2)?.includes("serving"));
  assert(row(2)?.includes("50%"), row(2));
  assert(lines.some((l) => l.includes("failed 1 (1× ECONNRESET)")));
});
