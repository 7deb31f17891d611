import { assert, assertEquals } from "./support/assert.ts";
import { test } from "./support/harness.ts";
import type { Sample } from "../testing/load.ts";
import {
  latency,
  overlapsAny,
  percentile,
  timeline,
  totals,
} from "../testing/stats.ts";
import { formatTable } from "../testing/table.ts";
import { niceCeiling, renderTimeline } from "../testing/svg.ts";

const sample = (start: number, end: number, pid: number | null): Sample => ({
  start,
  end,
  pid,
  kind: "keep-alive",
  ...(pid === null ? { error: "ECONNRESET" } : {}),
});

test("percentile uses the nearest rank", () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assertEquals(percentile(values, 50), 50);
  assertEquals(percentile(values, 99), 99);
  assertEquals(percentile(values, 100), 100);
  assertEquals(percentile([7], 99), 7);
  assert(Number.isNaN(percentile([], 50)));
  assertEquals(latency([3, 1, 2]), { count: 3, p50: 2, p99: 3, max: 3 });
});

test("a request counts as during a handover when it overlaps one", () => {
  const handovers = [{ start: 10, end: 20 }];
  assert(overlapsAny({ start: 5, end: 10 }, handovers));
  assert(overlapsAny({ start: 12, end: 15 }, handovers));
  assert(overlapsAny({ start: 20, end: 30 }, handovers));
  assert(!overlapsAny({ start: 0, end: 9 }, handovers));
  assert(!overlapsAny({ start: 21, end: 22 }, handovers));
});

test("totals split latency at handovers and count failures by reason", () => {
  const result = totals([
    sample(0, 1, 1),
    sample(11, 14, 1),
    sample(30, 32, 2),
    sample(12, 13, null),
  ], [{ start: 10, end: 20 }]);
  assertEquals(result.requests, 4);
  assertEquals(result.failed, 1);
  assertEquals(result.errors, [["ECONNRESET", 1]]);
  assertEquals(result.handover, { count: 1, p50: 3, p99: 3, max: 3 });
  assertEquals(result.steady, { count: 2, p50: 1, p99: 2, max: 2 });
});

test("timeline buckets served and failed requests by completion", () => {
  const t = timeline(
    [sample(0, 5, 1), sample(0, 15, 2), sample(0, 16, 2), sample(0, 25, null)],
    0,
    30,
    10,
  );
  assertEquals(t.buckets, 3);
  assertEquals([...t.served.keys()], [1, 2]);
  assertEquals(t.served.get(1), [1, 0, 0]);
  assertEquals(t.served.get(2), [0, 2, 0]);
  assertEquals(t.failed, [0, 0, 1]);
});

test("tables align numeric columns to the right", () => {
  assertEquals(
    formatTable(["name", "time"], [["a", "1.5 ms"], ["bb", "12 ms"]]),
    [
      "| name |   time |",
      "|------|-------:|",
      "| a    | 1.5 ms |",
      "| bb   |  12 ms |",
    ].join("\n"),
  );
});

test("the SVG timeline has one area per process and a mark per handover", () => {
  assertEquals([0.3, 1, 3, 7, 40].map(niceCeiling), [0.5, 1, 5, 10, 50]);
  const svg = renderTimeline(
    timeline(
      [sample(0, 5, 1), sample(0, 15, 2), sample(0, 25, null)],
      0,
      30,
      10,
    ),
    [{ pid: 1, runtime: "deno" }, { pid: 2, runtime: "bun" }],
    [{ index: 1, start: 8, end: 17 }],
    "a <title>",
  );
  assert(svg.startsWith("<svg"));
  assertEquals(svg.match(/<polygon/g)?.length, 3);
  assert(svg.includes(">#1<"));
  assert(svg.includes("pid 2 (bun)"));
  assert(svg.includes("a &lt;title&gt;"));
});
