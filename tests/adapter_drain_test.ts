/**
 * The drain every adapter shares, on its own: the order and timing of its
 * steps, the responses it marks, the WebSockets it waits for and closes, and
 * what becomes of a step that fails. The adapters' end-to-end drains are in
 * adapter_handover_test.ts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "./support/harness.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { Drain, type DrainTarget } from "../adapters/drain.ts";
import { type TakeoverStep, Upgrader } from "../mod.ts";

/**
 * A server as the drain sees it, recording when each step ran; its close
 * resolves with `closing` (default at once).
 */
function recordingTarget(
  overrides: Partial<DrainTarget> = {},
  closing: Promise<void> = Promise.resolve(),
) {
  const started = performance.now();
  const steps: [string, number][] = [];
  const at = (step: string) =>
    steps.push([step, Math.round(performance.now() - started)]);
  const target: DrainTarget = {
    stopAccepting: () => at("stopAccepting"),
    resumeAccepting: () => void at("resumeAccepting"),
    close: () => {
      at("close");
      return closing;
    },
    forceClose: () => at("forceClose"),
    ...overrides,
  };
  return { target, steps, names: () => steps.map(([name]) => name) };
}

/** A WebSocket as the drain sees it, recording its close frame. */
function recordingSocket() {
  const closes: [number | undefined, string | undefined][] = [];
  return {
    closes,
    close: (code?: number, reason?: string) => closes.push([code, reason]),
  };
}

test("drain: stops accepting at once, closes after the grace period, once", async () => {
  const { target, steps, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 200 });
  assertEquals(drain.draining, false);
  drain.start();
  drain.start();
  assertEquals(drain.draining, true);
  await drain.finished;
  assertEquals(names(), ["stopAccepting", "close"]);
  assert(steps[0][1] < 50, `stopAccepting after ${steps[0][1]} ms`);
  assert(steps[1][1] >= 190, `close after ${steps[1][1]} ms, before the grace`);
});

test("drain: a grace period below the settling time is raised to it", async () => {
  const { target, steps } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 0 });
  drain.start();
  await drain.finished;
  assert(steps[1][1] >= 45, `closed after ${steps[1][1]} ms`);
});

test("drain: stop() with a zero grace period closes at once, before any timer", async () => {
  const { target, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 0 });
  const order: string[] = [];
  const timer = new Promise<void>((resolve) =>
    setTimeout(() => resolve(void order.push("timer")), 0)
  );
  await drain.stop(() => {
    order.push("close");
    return Promise.resolve();
  });
  await timer;
  assertEquals(order, ["close", "timer"]);
  assertEquals(names(), ["stopAccepting"]);
  await drain.finished;
});

test("drain: finished waits for the server's requests and its WebSockets", async () => {
  const closed = Promise.withResolvers<void>();
  const { target } = recordingTarget({}, closed.promise);
  const drain = new Drain(target, { drainGracePeriod: 50 });
  const untrack = drain.track(recordingSocket());
  drain.start();
  let finished = false;
  drain.finished.then(() => finished = true);
  await new Promise((resolve) => setTimeout(resolve, 150));
  closed.resolve();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(finished, false, "a WebSocket is still open");
  untrack();
  await drain.finished;
});

test("drain: at the deadline WebSockets get 1001 and the rest is cut", async () => {
  const { target, names } = recordingTarget({}, new Promise<void>(() => {}));
  const drain = new Drain(target, {
    drainGracePeriod: 50,
    drainDeadline: 200,
  });
  const socket = recordingSocket();
  drain.track(socket);
  drain.start();
  await new Promise((resolve) => setTimeout(resolve, 300));
  assertEquals(socket.closes, [[1001, "server restarting"]]);
  assertEquals(names(), ["stopAccepting", "close", "forceClose"]);
});

test("drain: marks responses with Connection: close only while draining", async () => {
  const { target } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 50 });
  assertEquals(drain.mark(new Response("a")).headers.get("connection"), null);
  drain.start();
  assertEquals(
    drain.mark(new Response("b")).headers.get("connection"),
    "close",
  );
  const redirect = drain.mark(Response.redirect("http://127.0.0.1/", 302));
  assertEquals(
    [redirect.status, redirect.headers.get("connection")],
    [302, "close"],
  );
  assertEquals(redirect.headers.get("location"), "http://127.0.0.1/");
  const upgrade = { status: 101, headers: new Headers() } as Response;
  assertEquals(drain.mark(upgrade).headers.get("connection"), null);
  await drain.finished;
});

test("drain: a failing stopAccepting still closes the server and rejects finished", async () => {
  const failure = new Error("epoll_ctl failed");
  const { target, names } = recordingTarget({
    stopAccepting: () => {
      throw failure;
    },
  });
  const drain = new Drain(target, { drainGracePeriod: 50 });
  drain.start();
  const err = await assertRejects(drain.finished, Error, "epoll_ctl failed");
  assertEquals(err, failure);
  assertEquals(names(), ["close"]);
});

test("drain: a failing close rejects finished; nobody awaiting it is no crash", async () => {
  const failing = Promise.reject(new Error("close failed"));
  failing.catch(() => {});
  const { target } = recordingTarget({}, failing);
  const unawaited = new Drain(target, { drainGracePeriod: 50 });
  unawaited.start();
  const awaited = new Drain(target, { drainGracePeriod: 50 });
  awaited.start();
  await assertRejects(awaited.finished, Error, "close failed");
  // Give an unhandled rejection of the first drain the time to surface.
  await new Promise((resolve) => setTimeout(resolve, 50));
});

test("drain: settle resolves finished when the server stopped without a drain", async () => {
  const { target, names } = recordingTarget();
  const drain = new Drain(target);
  drain.settle(Promise.resolve());
  await drain.finished;
  assertEquals(names(), []);
});

test("drain: with a rollback window the server is closed only once the window is final", async () => {
  const { target, steps, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 50 });
  const final = Promise.withResolvers<void>();
  drain.start(final.promise);
  await new Promise((resolve) => setTimeout(resolve, 150));
  assertEquals(names(), ["stopAccepting"], "nothing closed before final");
  final.resolve();
  await drain.finished;
  assertEquals(names(), ["stopAccepting", "close"]);
  assert(steps[1][1] >= 140, `closed after ${steps[1][1]} ms`);
});

test("drain: resume accepts again, stops marking, and the undone drain never closes", async () => {
  const { target, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 50 });
  const final = Promise.withResolvers<void>();
  drain.start(final.promise);
  assertEquals(await drain.resume(), true);
  assertEquals(drain.draining, false);
  assertEquals(drain.mark(new Response("a")).headers.get("connection"), null);
  final.resolve(); // a late end of the undone window closes nothing
  await new Promise((resolve) => setTimeout(resolve, 100));
  assertEquals(names(), ["stopAccepting", "resumeAccepting"]);
  drain.start(); // the next takeover drains as usual
  await drain.finished;
  assertEquals(names(), [
    "stopAccepting",
    "resumeAccepting",
    "stopAccepting",
    "close",
  ]);
});

test("drain: stop() stops accepting at once, marks responses, and closes after the grace period", async () => {
  const { target, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 200 });
  const started = performance.now();
  let closedAfter = -1;
  const stopped = drain.stop(() => {
    closedAfter = performance.now() - started;
    return Promise.resolve();
  });
  assertEquals(names(), ["stopAccepting"]);
  assertEquals(
    drain.mark(new Response("a")).headers.get("connection"),
    "close",
  );
  await stopped;
  assert(
    closedAfter >= 190,
    `closed after ${closedAfter} ms, before the grace`,
  );
  await drain.finished;
  assertEquals(await drain.resume(), false);
});

test("drain: stop() closes at once when cutting, or when a drain has begun", async () => {
  for (const begun of [false, true]) {
    const { target } = recordingTarget();
    const drain = new Drain(target, { drainGracePeriod: 5_000 });
    if (begun) drain.start(new Promise<void>(() => {}));
    const started = performance.now();
    await drain.stop(() => Promise.resolve(), !begun);
    const waited = performance.now() - started;
    assert(waited < 1_000, `closed after ${Math.round(waited)} ms`);
    await drain.finished;
  }
});

test("drain: a server the application stopped is never resumed; finished follows its stop", async () => {
  const { target, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 50 });
  drain.start(new Promise<void>(() => {}));
  drain.stopped(Promise.resolve());
  await drain.finished;
  assertEquals(await drain.resume(), false);
  assertEquals(names(), ["stopAccepting"]);
  await graceOver();
});

/**
 * An upgrader as {@linkcode Drain.follow} sees it, whose takeover steps the
 * test sends; `end()` ends them, as the upgrader's `stop()` does.
 */
function scriptedTakeovers() {
  const steps: TakeoverStep[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  const woken = () => new Promise<void>((resolve) => wake = resolve);
  return {
    send(step: TakeoverStep) {
      steps.push(step);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    async *takeovers() {
      for (;;) {
        while (steps.length === 0 && !ended) await woken();
        if (steps.length === 0) return;
        yield steps.shift()!;
      }
    },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

test("drain: follow drains at each takeover and resumes at each rollback", async () => {
  const { target, names } = recordingTarget();
  const drain = new Drain(target, { drainGracePeriod: 50 });
  const upgrader = scriptedTakeovers();
  drain.follow(upgrader);
  for (let round = 0; round < 2; round++) {
    upgrader.send("upgraded");
    await settle();
    assertEquals(drain.draining, true, `round ${round}: draining`);
    upgrader.send("rolled-back");
    await settle();
    assertEquals(drain.draining, false, `round ${round}: resumed`);
  }
  upgrader.end();
  assertEquals(names(), [
    "stopAccepting",
    "resumeAccepting",
    "stopAccepting",
    "resumeAccepting",
  ]);
  await graceOver();
});

test("drain: follow closes once the takeover is final, or once the takeovers end", async () => {
  for (const last of ["final", "end"]) {
    const { target, names } = recordingTarget();
    const drain = new Drain(target, { drainGracePeriod: 50 });
    const upgrader = scriptedTakeovers();
    drain.follow(upgrader);
    upgrader.send("upgraded");
    await new Promise((resolve) => setTimeout(resolve, 150));
    assertEquals(names(), ["stopAccepting"], `${last}: closed before it`);
    if (last === "final") upgrader.send("final");
    else upgrader.end();
    await drain.finished;
    assertEquals(names(), ["stopAccepting", "close"]);
    upgrader.end();
  }
});

test("drain: follow drains when a successor takes over a real upgrader", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-drain-"));
  try {
    await using owner = await Upgrader.create(dir, { id: "old" });
    await owner.ready();
    const { target, names } = recordingTarget();
    const drain = new Drain(target, { drainGracePeriod: 50 });
    drain.follow(owner);
    await using successor = await Upgrader.create(dir, { id: "new" });
    await successor.ready();
    await drain.finished;
    assertEquals(names(), ["stopAccepting", "close"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Lets a 50 ms grace period's wait end within the test: Deno before 2.8
 * counts the message port that holds the process open meanwhile as a leak.
 */
function graceOver(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 60));
}
