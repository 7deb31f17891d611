/**
 * Upgrade metrics for Prometheus, without a dependency: the upgrader's and
 * the adapter's events become counters and a histogram, served on
 * `/metrics` next to the service's own routes. Start it, start another copy
 * with the same `--dir`, and scrape the new copy: it counts what it
 * inherited and how long it took to become ready. A copy prints its final
 * metrics on stdout when it exits, so the old copy's handover shows too.
 *
 * ```sh
 * deno run -A examples/metrics.ts --dir /tmp/metrics --addr 127.0.0.1:8080
 * curl -s 127.0.0.1:8080/metrics
 * ```
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { Upgrader, type UpgraderEvent } from "../mod.ts";
import { serve } from "../adapters/serve/mod.ts";

/** Upper bounds of the histogram buckets, in seconds. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A Prometheus histogram: cumulative buckets, sum and count. */
class Histogram {
  readonly counts = BUCKETS.map(() => 0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) this.counts[i]++;
    });
    this.sum += seconds;
    this.count++;
  }

  lines(name: string, labels: string): string[] {
    const sep = labels ? "," : "";
    return [
      ...BUCKETS.map((le, i) =>
        `${name}_bucket{${labels}${sep}le="${le}"} ${this.counts[i]}`
      ),
      `${name}_bucket{${labels}${sep}le="+Inf"} ${this.count}`,
      `${name}_sum${labels ? `{${labels}}` : ""} ${this.sum}`,
      `${name}_count${labels ? `{${labels}}` : ""} ${this.count}`,
    ];
  }
}

/** The upgrade metrics of one process, fed by `onEvent`. */
export class UpgradeMetrics {
  readonly #events = new Map<string, number>();
  #inherited = 0;
  readonly #phases = new Map<string, Histogram>();

  /** Pass as the upgrader's `onEvent` option. */
  readonly record = (event: UpgraderEvent): void => {
    this.#events.set(event.type, (this.#events.get(event.type) ?? 0) + 1);
    switch (event.type) {
      case "inherited":
        this.#inherited += event.count;
        this.#observe("inherit", event.durationMs);
        break;
      case "ready":
        this.#observe("ready", event.durationMs);
        break;
      case "upgraded":
        this.#observe("handover", event.durationMs);
        break;
      case "handover-failed":
        this.#observe("failed_handover", event.durationMs);
        break;
      case "drain-finished":
        this.#observe("drain", event.durationMs);
        break;
    }
  };

  #observe(phase: string, ms: number): void {
    const histogram = this.#phases.get(phase) ?? new Histogram();
    histogram.observe(ms / 1000);
    this.#phases.set(phase, histogram);
  }

  /** The text exposition format (version 0.0.4). */
  render(): string {
    const lines = [
      "# HELP tableroll_events_total Upgrader and drain events, by type.",
      "# TYPE tableroll_events_total counter",
      ...[...this.#events].sort().map(([type, n]) =>
        `tableroll_events_total{type="${type}"} ${n}`
      ),
      "# HELP tableroll_inherited_descriptors_total Descriptors received from a predecessor.",
      "# TYPE tableroll_inherited_descriptors_total counter",
      `tableroll_inherited_descriptors_total ${this.#inherited}`,
      "# HELP tableroll_phase_duration_seconds How long each phase of an upgrade took.",
      "# TYPE tableroll_phase_duration_seconds histogram",
      ...[...this.#phases].sort().flatMap(([phase, h]) =>
        h.lines("tableroll_phase_duration_seconds", `phase="${phase}"`)
      ),
    ];
    return lines.join("\n") + "\n";
  }
}

if (import.meta.main) {
  const { values: flags } = parseArgs({
    options: {
      dir: { type: "string" },
      addr: { type: "string", default: "127.0.0.1:8080" },
    },
  });
  if (!flags.dir) {
    console.error("usage: metrics.ts --dir DIR [--addr HOST:PORT]");
    process.exit(2);
  }
  const [, hostname, port] = flags.addr!.match(/^\[?(.*?)\]?:(\d+)$/) ?? [];
  const metrics = new UpgradeMetrics();
  mkdirSync(flags.dir, { recursive: true, mode: 0o700 });
  const upgrader = await Upgrader.create(flags.dir, {
    onEvent: metrics.record,
  });
  const server = await serve({
    upgrader,
    name: "web",
    hostname,
    port: Number(port),
    handler: (req: Request) =>
      new URL(req.url).pathname === "/metrics"
        ? new Response(metrics.render(), {
          headers: { "content-type": "text/plain; version=0.0.4" },
        })
        : new Response(`hello from ${process.pid}\n`),
    onListen() {},
  });
  await upgrader.ready();
  console.log(`READY ${process.pid}`);
  const stop = () => server.stop().then(() => upgrader.stop());
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  // The adapter drains after a takeover; a signal stops it.
  await server.finished;
  await upgrader.stop();
  console.log(metrics.render());
  process.exit(0);
}
