/**
 * Rollback: a successor that took over and dies within the old process's
 * rollback window hands the service back. Copies of `examples/hello.ts`
 * (Deno.serve or Bun.serve through the adapters) under keep-alive and
 * new-connection load; the successor is killed with SIGKILL. Each file runs
 * its runtime's pair and the cross-runtime pair that ends in it, so both
 * runtime runs together cover Deno→Deno, Bun→Bun, Deno→Bun and Bun→Deno.
 *
 * Requests in flight on the killed successor may fail; they are counted
 * apart from refused connections, of which there must be none.
 */
import { readdirSync } from "node:fs";
import { Agent, get as httpGet } from "node:http";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { type Copy, type ServiceFlags, startCopy } from "../testing/copies.ts";
import type { Line } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { getOnce, type Load, type Sample, startLoad } from "../testing/load.ts";
import { now, sleep } from "../testing/clock.ts";
import { TIMEOUT_MS } from "./fixtures/upgrader_peers.ts";
import { Upgrader, type UpgraderEvent } from "../mod.ts";
import { startServer } from "./fixtures/adapter_copies.ts";
import { injectFault } from "./fixtures/faults.ts";
import {
  assertOwner,
  lockIsFree,
  owner,
  peerUnder,
  type Place,
  WEB,
  withPlace,
} from "./fixtures/places.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

type Runtime = "deno" | "bun";

const other: Runtime = runtime === "deno" ? "bun" : "deno";
/** `test` for the node:http adapter: skipped where it cannot serve. */
const testNode = await nodeAdapterTest(runtime);
/** Long enough for a loaded machine to start a successor and kill it. */
const WINDOW_MS = 5_000;
const CLIENTS = { keepAliveClients: 4, newConnectionClients: 4 };

/** Starts the first copy under `first` on a free port; resolves once it is READY. */
async function serving(
  place: Place,
  first: Runtime,
  rollbackWindow = WINDOW_MS,
  delay = 0,
): Promise<{ port: number; flags: ServiceFlags; old: Copy }> {
  const port = await freePort();
  const flags = {
    dir: place.dir,
    name: "web",
    addr: `127.0.0.1:${port}`,
    delay,
    rollbackWindow,
  };
  const old = startCopy(place.group, first, flags);
  await old.ready(TIMEOUT_MS);
  return { port, flags, old };
}

function load(port: number): Load {
  return startLoad({
    hostname: "127.0.0.1",
    port,
    ...CLIENTS,
    rate: 200,
    maxRequests: 1_000_000,
  });
}

/** The number of descriptors process `pid` holds. */
function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resolves once `copy` printed `DRAINED` and exited 0. */
async function drainedAndGone(copy: Copy, ms = TIMEOUT_MS): Promise<Line> {
  const line = await copy.drained(ms);
  assertEquals((await copy.child.exited).code, 0, `exit of ${copy.child.pid}`);
  return line;
}

/** The `Connection` header of the answer to a keep-alive request to `port`. */
function connectionHeader(port: number): Promise<string | undefined> {
  const agent = new Agent({ keepAlive: true });
  return new Promise<string | undefined>((resolve, reject) => {
    httpGet({ host: "127.0.0.1", port, agent }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.headers.connection));
    }).on("error", reject);
  }).finally(() => agent.destroy());
}

/** How many times `copy` printed `ROLLED-BACK`. */
function rollbacks(copy: Copy): number {
  return copy.child.output.match(/^ROLLED-BACK /gm)?.length ?? 0;
}

/** Resolves once `samples` hold an answer from `pid` sent after `since`. */
function servedBy(samples: Sample[], pid: number, since: number) {
  return until(
    () => samples.some((s) => s.pid === pid && s.start > since),
    `an answer from ${pid}`,
  );
}

for (const first of [runtime, other] as const) {
  for (const moment of ["right after READY", "with requests in flight"]) {
    test(
      `rollback (${first}→${runtime}): the successor killed ${moment} hands back to the old process under load; no connection refused`,
      () =>
        withPlace(async (place) => {
          const inFlight = moment !== "right after READY";
          const { port, flags, old } = await serving(
            place,
            first,
            WINDOW_MS,
            inFlight ? 200 : 0,
          );
          const traffic = load(port);
          let killedAt = 0;
          try {
            await servedBy(traffic.samples, old.child.pid, 0);
            const baseline = descriptors(old.child.pid);
            const next = startCopy(place.group, runtime, flags);
            const ready = await next.ready(TIMEOUT_MS);
            if (inFlight) {
              await servedBy(traffic.samples, next.child.pid, ready.at);
            }
            killedAt = now();
            next.child.kill("SIGKILL");
            const back = await old.rolledBack(TIMEOUT_MS);
            await servedBy(traffic.samples, old.child.pid, back.at);
            assertEquals(owner(place), String(old.child.pid));
            assert(lockIsFree(place), "the lock is free");
            assert(
              await connectionHeader(port) !== "close",
              "the drain's marking stopped",
            );
            await traffic.stop();
            // The connections of the load close; nothing else may stay open.
            await until(
              () => descriptors(old.child.pid) <= baseline,
              "the descriptors back to the baseline",
            );
          } finally {
            await traffic.stop();
          }
          const refused = traffic.samples.filter((s) =>
            s.error === "ECONNREFUSED"
          );
          assertEquals(refused.length, 0, "refused connections");
          // At most one request per client was on the killed successor.
          const lost = traffic.samples.filter((s) => s.error);
          assert(
            lost.length <=
              CLIENTS.keepAliveClients + CLIENTS.newConnectionClients,
            `${lost.length} requests failed: ${
              lost.map((s) => s.error).join(", ")
            }`,
          );
          assert(
            lost.every((s) => s.end >= killedAt),
            "only requests around the kill failed",
          );
          assert(
            !old.child.output.includes("DRAINED"),
            "the old process did not drain",
          );
          // The next ordinary upgrade works; the window ends, the old one drains.
          const third = startCopy(place.group, runtime, flags);
          const taken = await third.ready(TIMEOUT_MS);
          const drained = await drainedAndGone(old, WINDOW_MS + TIMEOUT_MS);
          // The window began before READY arrived here; allow for the pipe.
          assert(
            drained.at - taken.at > WINDOW_MS - 1000,
            "the server stayed up for the window",
          );
          assertEquals(owner(place), String(third.child.pid));
        }),
      { timeout: 120_000 },
    );
  }
}

test(
  `rollback (${runtime}): two successors dying in a row are both rolled back`,
  () =>
    withPlace(async (place) => {
      const { port, flags, old } = await serving(place, other);
      for (let round = 1; round <= 2; round++) {
        const next = startCopy(place.group, runtime, flags);
        await next.ready(TIMEOUT_MS);
        next.child.kill("SIGKILL");
        await until(() => rollbacks(old) === round, `rollback ${round}`);
        assertEquals(owner(place), String(old.child.pid), `round ${round}`);
      }
      const traffic = load(port);
      await servedBy(traffic.samples, old.child.pid, now());
      await traffic.stop();
      assertEquals(traffic.samples.filter((s) => s.error), []);
    }),
  { timeout: 120_000 },
);

test(
  `rollback (${runtime}): a successor dying while a third process takes over from it is not rolled back`,
  () =>
    withPlace(async (place) => {
      const { port, flags, old } = await serving(place, other);
      const next = startCopy(place.group, runtime, flags);
      await next.ready(TIMEOUT_MS);
      // The third holds the lock and the descriptors, and calls ready() later.
      const third = peerUnder(
        runtime,
        place,
        "--fd",
        WEB.replace(":0", `:${port}`),
        "--serve",
        "--ready",
        "1000",
      );
      await third.event("created");
      next.child.kill("SIGKILL");
      await third.event("ready");
      await drainedAndGone(old, WINDOW_MS + TIMEOUT_MS);
      assert(!old.child.output.includes("ROLLED-BACK"), old.child.output);
      await assertOwner(place, third, port);
    }),
  { timeout: 120_000 },
);

test(
  `rollback (${runtime}): a successor dying as the window ends leaves one owner or none, never half of each`,
  () =>
    withPlace(async (place) => {
      const window = 1_500;
      const outcomes: string[] = [];
      for (const offset of [-300, -100, 0, 100]) {
        const { port, flags, old } = await serving(place, other, window);
        const next = startCopy(place.group, runtime, flags);
        const ready = await next.ready(TIMEOUT_MS);
        await sleep(ready.at + window + offset - now());
        next.child.kill("SIGKILL");
        await next.child.exited;
        const outcome = await Promise.race([
          old.rolledBack(TIMEOUT_MS).then(() => "rolled back"),
          old.drained(TIMEOUT_MS).then(() => "drained"),
        ]);
        outcomes.push(`${offset} ms: ${outcome}`);
        if (outcome === "rolled back") {
          assertEquals(owner(place), String(old.child.pid));
          const traffic = load(port);
          await servedBy(traffic.samples, old.child.pid, now());
          await traffic.stop();
          old.child.kill("SIGTERM");
          await drainedAndGone(old);
        } else {
          assertEquals((await old.child.exited).code, 0);
          assert(!old.child.output.includes("ROLLED-BACK"), old.child.output);
          assertEquals(owner(place), String(next.child.pid));
        }
        assert(lockIsFree(place), "the lock is free");
      }
      console.log(
        `window ${window} ms, kill at its end: ${outcomes.join("; ")}`,
      );
    }),
  { timeout: 180_000 },
);

testNode(
  `rollback (node:http on ${runtime}): the adapter accepts again after the successor died, and drains after the next upgrade`,
  () =>
    withPlace(async (place) => {
      const port = await freePort();
      const spec = {
        dir: join(place.tmp, "node"),
        addr: `127.0.0.1:${port}`,
        rollbackWindow: WINDOW_MS,
      };
      const copy = { adapter: "node", runtime } as const;
      const old = startServer(place.group, copy, spec);
      await old.ready();
      const traffic = load(port);
      try {
        const next = startServer(place.group, copy, spec);
        await next.ready();
        const since = now();
        next.child.kill("SIGKILL");
        await old.child.waitForLine(/^ROLLED-BACK /, TIMEOUT_MS);
        await servedBy(traffic.samples, old.child.pid, since);
        assert(await connectionHeader(port) !== "close", "marking stopped");
      } finally {
        await traffic.stop();
      }
      assertEquals(
        traffic.samples.filter((s) => s.error === "ECONNREFUSED").length,
        0,
        "refused connections",
      );
      const third = startServer(place.group, copy, spec);
      await third.ready();
      await old.gone();
    }),
  { timeout: 120_000 },
);

test(
  `rollback (${runtime}): on a kernel without pidfd_open the successor's death is seen through /proc`,
  () =>
    withPlace(async (place) => {
      // Long: the death must be seen, not found at the end of the window.
      const { port, flags, old } = await serving(place, runtime, 30_000);
      await injectFault(place.group, old.child.pid, {
        syscall: "pidfd_open",
        when: 1,
        action: "error=ENOSYS",
      });
      const next = startCopy(place.group, other, flags);
      await next.ready(TIMEOUT_MS);
      next.child.kill("SIGKILL");
      await old.rolledBack(TIMEOUT_MS);
      const traffic = load(port);
      await servedBy(traffic.samples, old.child.pid, now());
      await traffic.stop();
      assertEquals(traffic.samples.filter((s) => s.error), []);
    }),
  { timeout: 120_000 },
);

for (const adapter of [runtime, "node"] as const) {
  const it = adapter === "node" ? testNode : test;
  it(
    `rollback (${adapter} adapter on ${runtime}): a server the application stopped during the window does not accept again when the upgrader rolls back`,
    () =>
      withPlace(async (place) => {
        const port = await freePort();
        const spec = {
          dir: join(place.tmp, "stopped"),
          addr: `127.0.0.1:${port}`,
          rollbackWindow: WINDOW_MS,
        };
        const copy = { adapter, runtime } as const;
        const old = startServer(place.group, copy, spec);
        await old.ready();
        const next = startServer(place.group, copy, spec);
        await next.ready();
        old.child.kill("SIGUSR2");
        await old.child.waitForLine(/^DRAINED /, TIMEOUT_MS);
        next.child.kill("SIGKILL");
        await old.child.waitForLine(/^ROLLED-BACK /, TIMEOUT_MS);
        // The upgrader is the owner again, but the stopped server stays
        // closed: no answer, and no crash.
        assertEquals((await getOnce(port, 1000)).pid, null);
        assertEquals(old.child.exit, undefined, "the old process still runs");
      }),
    { timeout: 120_000 },
  );
}

test(
  `rollback (${runtime}): onEvent gets rolled-back, and the log says ROLLED BACK at error level`,
  () =>
    withPlace(async (place) => {
      const events: UpgraderEvent[] = [];
      const errors: string[] = [];
      const owner = await Upgrader.create(place.dir, {
        rollbackWindow: WINDOW_MS,
        onEvent: (e) => events.push(e),
        logger: {
          debug: () => {},
          info: () => {},
          warn: () => {},
          error: (message: string) => errors.push(message),
        },
      });
      try {
        owner.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
        await owner.ready();
        const successor = peerUnder(other, place, "--fd", WEB, "--serve");
        await successor.event("ready");
        const takeovers = owner.takeovers();
        assertEquals((await takeovers.next()).value, "upgraded");
        successor.child.kill("SIGKILL");
        assertEquals((await takeovers.next()).value, "rolled-back");
        assertEquals(owner.state, "owner");
        const types = events.map((e) => e.type);
        assertEquals(types.slice(-2), ["upgraded", "rolled-back"]);
        const rolledBack = events.at(-1)!;
        assert(
          rolledBack.type === "rolled-back" &&
            rolledBack.successorPid === successor.pid &&
            rolledBack.durationMs >= 0 && rolledBack.durationMs < WINDOW_MS,
          JSON.stringify(rolledBack),
        );
        assert(
          errors.some((m) => m.includes("ROLLED BACK")),
          errors.join("\n"),
        );
      } finally {
        await owner.stop();
      }
    }),
  { timeout: 120_000 },
);
