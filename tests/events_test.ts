/**
 * The upgrader's events and structured log records across a failed
 * handover, a handover and a stop (in one process), and the adapters' drain
 * events through the metrics example (real processes).
 */
import { mkdtempSync, rmSync } from "node:fs";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { takenOver } from "./support/takeover.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { Upgrader, type UpgraderEvent } from "../mod.ts";
import { withPlace } from "./fixtures/place.ts";
import { commandLine } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";

/** An upgrader's events and log records, as they arrive. */
function recorder() {
  const events: UpgraderEvent[] = [];
  const records: { level: string; message: string; data: unknown }[] = [];
  const log = (level: string) => (message: string, data?: unknown) =>
    records.push({ level, message, data });
  return {
    events,
    records,
    types: () => events.map((e) => e.type),
    options: {
      onEvent: (e: UpgraderEvent) => events.push(e),
      logger: {
        debug: log("debug"),
        info: log("info"),
        warn: log("warn"),
        error: log("error"),
      },
    },
  };
}

test("events: in order, with sane durations, across a failed handover, a handover and a stop", async () => {
  const dir = mkdtempSync("/tmp/tr-");
  try {
    const a = recorder();
    const started = performance.now();
    const owner = await Upgrader.create(dir, { id: "a", ...a.options });
    const web = owner.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
    await owner.ready();
    const port = (web.address as { port: number }).port;

    // A successor that stops before ready(): the owner's handover fails.
    const b = recorder();
    const quitter = await Upgrader.create(dir, { id: "b", ...b.options });
    await quitter.stop();
    await until(() => a.types().includes("handover-failed"), "handover-failed");

    const c = recorder();
    const createdAt = performance.now();
    const createdWall = Date.now();
    const successor = await Upgrader.create(dir, { id: "c", ...c.options });
    successor.fds.listen("web", { hostname: "127.0.0.1", port });
    await successor.ready();
    const readyAt = performance.now();
    await takenOver(owner);
    await owner.stop();
    await successor.stop();
    const total = performance.now() - started;

    assertEquals(a.types(), [
      "ready",
      "handover-started",
      "handover-failed",
      "handover-started",
      "upgraded",
      "stopped",
    ]);
    assertEquals(b.types(), ["inherited", "stopped"]);
    assertEquals(c.types(), ["inherited", "claiming", "ready", "stopped"]);

    const [ready, , failed, , upgraded, stopped] = a.events;
    const pid = process.pid;
    assert(ready.type === "ready" && ready.predecessor === null);
    assert(failed.type === "handover-failed" && failed.successorPid === pid);
    assert(/closed|EOF|died/i.test(failed.reason), failed.reason);
    assert(upgraded.type === "upgraded" && upgraded.successorPid === pid);
    assert(stopped.type === "stopped" && stopped.from === "upgraded");
    const [inherited, , cReady] = c.events;
    assert(inherited.type === "inherited");
    assertEquals([inherited.from, inherited.count], ["a", 1]);
    assert(cReady.type === "ready" && cReady.predecessor === "a");
    // Durations: non-negative, nested as the phases are, bounded by the wall clock.
    for (const e of [...a.events, ...b.events, ...c.events]) {
      if ("durationMs" in e) {
        assert(
          e.durationMs >= 0 && e.durationMs <= total,
          `${e.type}: ${e.durationMs}`,
        );
      }
      assertEquals(
        e.id,
        a.events.includes(e) ? "a" : b.events.includes(e) ? "b" : "c",
      );
    }
    assert(inherited.durationMs <= cReady.durationMs, "inherited within ready");
    assert(
      cReady.durationMs <= readyAt - createdAt + 1,
      "ready within create → ready",
    );
    // The owner learns that the handover is complete from the record the
    // successor writes before its ready (by polling, so a moment later), and
    // the handover began after the successor started.
    assert(
      upgraded.time >= cReady.time,
      "upgraded after the successor's ready",
    );
    assert(
      upgraded.time - upgraded.durationMs >= createdWall - 1,
      "the handover began after the successor started",
    );
    assert(failed.durationMs < total);
    const times = a.events.map((e) => e.time);
    assertEquals(times, [...times].sort((x, y) => x - y), "times in order");

    // Each event is also a structured log record: a message and a data object.
    for (const e of a.events) {
      const record = a.records.find((r) =>
        (r.data as { event?: string } | undefined)?.event === e.type
      );
      assert(record, `no log record for ${e.type}`);
      assert(record.message.startsWith("tableroll: "), record.message);
    }
    const failedRecord = a.records.find((r) =>
      (r.data as { event?: string })?.event === "handover-failed"
    )!;
    assertEquals(failedRecord.level, "warn");
    assertEquals(
      (failedRecord.data as { successorPid: number }).successorPid,
      pid,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("events: a throwing onEvent is logged and changes nothing", async () => {
  const dir = mkdtempSync("/tmp/tr-");
  try {
    const errors: string[] = [];
    const upgrader = await Upgrader.create(dir, {
      onEvent: () => {
        throw new Error("listener bug");
      },
      logger: {
        debug() {},
        info() {},
        warn() {},
        error: (message: string) => errors.push(message),
      },
    });
    await upgrader.ready();
    assertEquals(upgrader.state, "owner");
    await upgrader.stop();
    assertEquals(errors.length, 2);
    assert(
      /onEvent listener threw on ready: listener bug/.test(errors[0]),
      errors[0],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("events: the metrics example counts inherited descriptors, handovers and drains on /metrics", () =>
  withPlace(async ({ group, dir }) => {
    const port = await freePort();
    const start = () =>
      group.spawn(...commandLine(runtime, "examples/metrics.ts", [
        "--dir",
        dir,
        "--addr",
        `127.0.0.1:${port}`,
      ]));
    const old = start();
    await old.waitForLine(/^READY \d+$/, 20_000);
    const next = start();
    await next.waitForLine(/^READY \d+$/, 20_000);
    // The old copy prints its final metrics when it exits.
    await old.exited;
    const oldMetrics = old.output;
    for (
      const line of [
        'tableroll_events_total{type="ready"} 1',
        'tableroll_events_total{type="handover-started"} 1',
        'tableroll_events_total{type="upgraded"} 1',
        'tableroll_events_total{type="drain-started"} 1',
        'tableroll_events_total{type="drain-finished"} 1',
        'tableroll_phase_duration_seconds_count{phase="handover"} 1',
        'tableroll_phase_duration_seconds_bucket{phase="drain",le="+Inf"} 1',
      ]
    ) {
      assert(oldMetrics.includes(line), `${line} missing from\n${oldMetrics}`);
    }
    const scraped = await (await fetch(`http://127.0.0.1:${port}/metrics`))
      .text();
    for (
      const line of [
        'tableroll_events_total{type="inherited"} 1',
        "tableroll_inherited_descriptors_total 1",
        'tableroll_phase_duration_seconds_count{phase="ready"} 1',
      ]
    ) {
      assert(scraped.includes(line), `${line} missing from\n${scraped}`);
    }
    assert(!scraped.includes('type="upgraded"'), scraped);
  }));
