import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
} from "node:fs";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { type Copy, startCopy } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { getOnce, startLoad } from "../testing/load.ts";
import { ask, type Peer, TIMEOUT_MS } from "./fixtures/upgrader_peers.ts";
import {
  assertOwner,
  owner,
  owning,
  peer,
  peerUnder,
  type Place,
  portOf,
  WEB,
  withPlace,
} from "./fixtures/places.ts";

/** Flags for a descriptor of every kind; `tag` names the socket path and file. */
function everyKind({ tmp }: Place, tag: string): string[] {
  return [
    ["--fd", WEB],
    ["--fd", `sock=unix:${join(tmp, `${tag}.sock`)}`],
    ["--fd", "dgram=udp:127.0.0.1:0"],
    ["--fd", `log=file:${join(tmp, `${tag}.log`)}`],
  ].flat();
}

/**
 * Whether process `pid` holds the server side of an established TCP
 * connection to `port`, i.e. it accepted one (a connection still in the
 * listen backlog belongs to no process yet).
 */
function acceptedBy(pid: number, port: number): boolean {
  const established = new Set(
    readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter(([, local, , state]) =>
        state === "01" && parseInt(local?.split(":")[1] ?? "", 16) === port
      )
      .map((fields) => `socket:[${fields[9]}]`),
  );
  const fdDir = `/proc/${pid}/fd`;
  return readdirSync(fdDir).some((fd) => {
    try {
      return established.has(readlinkSync(join(fdDir, fd)));
    } catch {
      return false; // closed meanwhile
    }
  });
}

/** Resolves once `copy` printed DRAINED and exited 0. */
async function drained(copy: Copy): Promise<void> {
  await copy.drained(TIMEOUT_MS);
  const { code } = await copy.child.exited;
  assertEquals(code, 0, `exit status of ${copy.child.pid}`);
}

const other = runtime === "deno" ? "bun" : "deno";

/** A successor started with `args` takes over from `old`, which exits 0. */
async function takeOver(
  place: Place,
  old: Peer,
  port: number,
  args: string[] = [],
): Promise<Peer> {
  const [next] = await owning(place, args);
  await old.gone();
  await assertOwner(place, next, port);
  return next;
}

test(`upgrader process (${runtime}): an in-flight request completes after takeover`, () =>
  withPlace(async (place) => {
    const flags = {
      dir: place.dir,
      name: "web",
      addr: `127.0.0.1:${await freePort()}`,
      delay: 1000,
    };
    const port = Number(flags.addr.split(":")[1]);
    const old = startCopy(place.group, runtime, flags);
    await old.ready(TIMEOUT_MS);
    // Start the successor only once the owner accepted the connection.
    const slow = getOnce(port);
    await until(() => acceptedBy(old.child.pid, port));
    const next = startCopy(place.group, runtime, flags);
    await next.ready(TIMEOUT_MS);
    await drained(old);
    const answer = await slow;
    assertEquals(answer.error, undefined);
    assertEquals(answer.pid, old.child.pid);
    assert(answer.end - answer.start >= 1000, "the delay was served");
    assertEquals((await getOnce(port)).pid, next.child.pid);
  }));

test(`upgrader process (${runtime}): a successor that never calls ready() is dropped after the upgrade timeout`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place, ["--upgrade-timeout", "500"]);
    const before = await first.fds();
    const stuck = peer(place, "--fd", WEB, "--ready", "never");
    const { descriptors } = await stuck.event("created");
    assertEquals(descriptors, [{
      name: "web",
      kind: "listener",
      addr: `127.0.0.1:${port}`,
      inherited: true,
    }]);
    const started = Date.now();
    await first.log(
      "warn",
      new RegExp(`handover to pid ${stuck.pid} failed.*timed out`),
    );
    assert(Date.now() - started < 5000, "dropped within the timeout");
    assertEquals(await first.fds(), before);
    await assertOwner(place, first, port);
    // It still holds the lock: a third process can only go ahead once it stops.
    stuck.child.kill("SIGTERM");
    await stuck.gone();
    await takeOver(place, first, port);
  }));

test(`upgrader process (${runtime}): a successor killed before ready() leaves the owner serving, with no descriptor leaked`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place);
    const before = await first.fds();
    const doomed = peer(place, "--fd", WEB, "--ready", "never");
    await doomed.event("created");
    doomed.child.kill("SIGKILL");
    await first.log("warn", new RegExp(`handover to pid ${doomed.pid} failed`));
    assertEquals(await first.fds(), before);
    await assertOwner(place, first, port);
    await takeOver(place, first, port);
  }));

test(`upgrader process (${runtime}): a successor ready after the owner gave up fails ready() and frees the lock at once`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place, ["--upgrade-timeout", "300"]);
    const late = peer(place, "--fd", WEB, "--ready", "1500");
    await first.log("warn", new RegExp(`handover to pid ${late.pid} failed`));
    const failed = await late.event("failed");
    assertEquals(failed.state, "stopped");
    assert(failed.error.startsWith("peer-closed:"), failed.error);
    await assertOwner(place, first, port);
    // The failed process released the lock although it still runs.
    await takeOver(place, first, port);
    assertEquals(late.child.exit, undefined);
    late.child.kill("SIGTERM");
    await late.gone();
  }));

test(`upgrader process (${runtime}): two successors started together take over one after the other`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place);
    const racers = [1, 2].map(() => peer(place, "--fd", WEB, "--serve"));
    await Promise.all(racers.map((p) => p.event("ready")));
    await first.gone();
    const last = racers.find((p) => owner(place) === String(p.pid));
    assert(last, `the owner is ${owner(place)}, not one of them`);
    const middle = racers.find((p) => p !== last)!;
    await middle.log(
      "info",
      new RegExp(`inherited 1 descriptors from ${first.pid}"`),
    );
    await last.log(
      "info",
      new RegExp(`inherited 1 descriptors from ${middle.pid}"`),
    );
    await middle.gone();
    await assertOwner(place, last, port);
  }));

test(`upgrader process (${runtime}): after the owner was killed, the next process starts afresh`, () =>
  withPlace(async (place) => {
    const web = `web=tcp:127.0.0.1:${await freePort()}`;
    const [first, port] = await owning(place, [], web);
    assertEquals(await ask({ host: "127.0.0.1", port }), first.pid);
    first.child.kill("SIGKILL");
    await first.child.exited;
    const [next] = await owning(place, [], web);
    await next.log("warn", new RegExp(`owner ${first.pid} is gone`));
    const [listener] = (await next.event("created")).descriptors;
    assertEquals(listener.inherited, false);
    await assertOwner(place, next, port);
  }));

test(`upgrader process (${runtime}): aborting the create signal after create() does not break ready()`, () =>
  withPlace(async (place) => {
    const [first, port] = await owning(place);
    await takeOver(place, first, port, [
      "--abort-after-create",
      "--ready",
      "100",
    ]);
  }));

test(`upgrader process (${runtime}): an id is reused after stop() and after a SIGKILL`, () =>
  withPlace(async (place) => {
    const sock = join(place.dir, "svc.sock");
    const svc = ["--id", "svc"];
    const [first] = await owning(place, svc);
    first.child.kill("SIGTERM");
    await first.gone();
    assert(!existsSync(sock), "stop() removed svc.sock");

    const [second] = await owning(place, svc);
    second.child.kill("SIGKILL");
    await second.child.exited;
    assert(existsSync(sock), "a killed process leaves svc.sock behind");

    const [third, port] = await owning(place, svc);
    assertEquals(owner(place), "svc");
    // Its control socket works: a successor takes over from it.
    const fourth = await takeOver(place, third, port);
    const [web] = (await fourth.event("created")).descriptors;
    assertEquals(web.inherited, true);
  }));

test(
  `upgrader process (${runtime}): a Unix listener goes down a chain of 11 processes`,
  () =>
    withPlace(async (place) => {
      const path = join(place.tmp, "web.sock");
      const unix = ["--fd", `web=unix:${path}`, "--serve"];
      let current = peer(place, ...unix);
      await current.event("ready");
      for (let i = 1; i <= 10; i++) {
        assertEquals(await ask({ path }), current.pid, `before handover ${i}`);
        const next = peer(place, ...unix);
        await next.event("ready");
        await current.gone();
        current = next;
      }
      assertEquals(await ask({ path }), current.pid);
    }),
  { timeout: 60_000 },
);

test(`upgrader process (${runtime}): descriptors of every kind go from ${other} to ${runtime} and back`, () =>
  withPlace(async (place) => {
    const args = everyKind(place, "a");
    let previous = peerUnder(other, place, ...args);
    const listed = (await previous.event("created")).descriptors;
    await previous.event("ready");
    for (const r of [runtime, other] as const) {
      const next = peerUnder(r, place, ...args);
      assertEquals(
        (await next.event("created")).descriptors,
        listed.map((d) => ({ ...d, inherited: true })),
      );
      await next.event("ready");
      await previous.gone();
      previous = next;
    }
  }));

test(`upgrader process (${runtime}): 600 listeners in one handover, no extra descriptor`, () =>
  withPlace(async (place) => {
    const first = peer(place, "--tcp-listeners", "600");
    const listed = (await first.event("created")).descriptors;
    await first.event("ready");
    const fresh = await first.fds();
    const next = peer(place, "--tcp-listeners", "600");
    const inherited = (await next.event("created")).descriptors;
    assertEquals(inherited, listed.map((d) => ({ ...d, inherited: true })));
    assertEquals(new Set(listed.map((d) => d.addr)).size, 600);
    await next.event("ready");
    assertEquals((await next.fds()).fds, fresh.fds);
    await first.gone();
  }));

test(`upgrader process (${runtime}): the new owner holds as many descriptors as a fresh process`, () =>
  withPlace(async (place) => {
    const first = peer(
      place,
      ...everyKind(place, "a"),
      "--fd",
      "old=tcp:127.0.0.1:0",
    );
    const oldPort = await portOf(first, "old");
    await first.event("ready");
    // The successor does not claim "old": ready() must close it.
    const next = peer(place, ...everyKind(place, "a"));
    await next.event("ready");
    const { fds: held } = await next.fds();
    await first.gone();
    await assertRefused(oldPort);

    const elsewhere = join(place.tmp, "fresh");
    mkdirSync(elsewhere, { mode: 0o700 });
    const fresh = peer({ ...place, dir: elsewhere }, ...everyKind(place, "b"));
    await fresh.event("ready");
    assertEquals(held, (await fresh.fds()).fds);
  }));

async function assertRefused(port: number): Promise<void> {
  const error = await ask({ host: "127.0.0.1", port }).then(
    () => "answered",
    (err) => err.code,
  );
  assertEquals(error, "ECONNREFUSED", `port ${port}`);
}

test(
  `upgrader process (${runtime}): Deno, Bun, Deno hand over under load without a failed connection`,
  () =>
    withPlace(async (place) => {
      const port = await freePort();
      const flags = {
        dir: place.dir,
        name: "web",
        addr: `127.0.0.1:${port}`,
        delay: 0,
      };
      let current = startCopy(place.group, "deno", flags);
      await current.ready(TIMEOUT_MS);
      const load = startLoad({
        hostname: "127.0.0.1",
        port,
        keepAliveClients: 0,
        newConnectionClients: 2,
        rate: 150,
        maxRequests: 600,
      });
      const served = (pid: number) =>
        load.samples.filter((s) => s.pid === pid).length;
      try {
        for (const next of ["bun", "deno"] as const) {
          await until(() => served(current.child.pid) >= 20);
          const successor = startCopy(place.group, next, flags);
          await successor.ready(TIMEOUT_MS);
          await drained(current);
          current = successor;
        }
        await until(() =>
          served(current.child.pid) >= 20 && load.samples.length >= 300
        );
      } finally {
        await load.stop();
      }
      const failed = load.samples.filter((s) => s.error);
      assertEquals(failed.slice(0, 3), [], `${failed.length} failed requests`);
    }),
  { timeout: 60_000 },
);

/** Polls `condition` until it holds; fails after {@linkcode TIMEOUT_MS}. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + TIMEOUT_MS;
  while (!condition()) {
    assert(Date.now() < deadline, `not reached within ${TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
