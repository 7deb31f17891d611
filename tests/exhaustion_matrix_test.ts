/**
 * Resource exhaustion at every call the library makes during an upgrade:
 * each occurrence of `openat`, `pidfd_open`, `accept4`, `socket`, `recvmsg`,
 * `sendmsg` and `read` in the owner and in the successor fails with
 * `EMFILE`, with `ENFILE` and with `ENOMEM` (`strace -e inject`, one fault
 * a cell). The occurrences are counted first, in an upgrade traced without a
 * fault. After each cell:
 *
 * - the owner has not exited, unless the successor took over (then it
 *   drained and exited 0): nothing the library does ends it;
 * - the successor took over, or within 2 s exited or failed `ready()`, with
 *   a message naming the call and the errno when the fault was its own;
 * - whoever owns the service holds the descriptors it held before (no
 *   leak), and the next upgrade is ready within 2 s.
 *
 * Cells run in three chains at once; the next upgrade of one cell owns the
 * service for the chain's next cell. Each file runs its runtime's pair and
 * the cross-runtime pair that ends in it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { runtime, scaled, test } from "./support/harness.ts";
import { within } from "./support/until.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { freePort } from "../testing/rolling.ts";
import type { Child } from "../testing/processes.ts";
import { owning, peerUnder, type Place, withPlace } from "./fixtures/places.ts";
import type { Peer } from "./fixtures/upgrader_peers.ts";
import {
  attachStrace,
  injectFault,
  straceCannotAttach,
} from "./fixtures/faults.ts";

type Runtime = "deno" | "bun";
type Side = "owner" | "successor";

// Deno's update check opens a socket at a time of its own, which the
// descriptor counts below would take for a leak.
process.env.DENO_NO_UPDATE_CHECK = "1";

const CALLS = [
  "openat",
  "pidfd_open",
  "accept4",
  "socket",
  "recvmsg",
  "sendmsg",
  "read",
] as const;
const ERRNOS = ["EMFILE", "ENFILE", "ENOMEM"] as const;
/** The libc function behind a system call, as error messages name it. */
const FUNCTION: Record<string, string> = { openat: "open" };

/** How long a successor, or the next upgrade, may take. */
const WITHIN_MS = scaled(2_000);
/** How long one cell may take in all. */
const CELL_MS = scaled(20_000);
/** How many chains of cells run at once. */
const CHAINS = 3;

/** One cell: the `when`-th call of `syscall` on `side` fails with `errno`. */
interface Cell {
  side: Side;
  syscall: string;
  when: number;
  errno: string;
}

function describeCell({ side, syscall, when, errno }: Cell): string {
  return `${side} ${syscall}#${when} ${errno}`;
}

/** Why strace cannot inject faults here, if it cannot. */
const noStrace = await straceCannotAttach();

for (
  const ownerRuntime of [runtime, runtime === "deno" ? "bun" : "deno"] as const
) {
  test(
    `exhaustion matrix (${ownerRuntime} → ${runtime}): no call failing for want of descriptors or memory ends, wedges or leaks`,
    async () => {
      const web = `web=tcp:127.0.0.1:${await freePort()}`;
      const census = await countCalls(ownerRuntime, web);
      const cells = CALLS.flatMap((syscall) =>
        (["owner", "successor"] as const).flatMap((side) =>
          Array.from(
            { length: census[side][syscall] ?? 0 },
            (_, i) =>
              ERRNOS.map((errno): Cell => ({
                side,
                syscall,
                when: i + 1,
                errno,
              })),
          ).flat()
        )
      );
      assert(cells.length > 0, "the census counted calls");
      const failures: string[] = [];
      const injected = await Promise.all(
        Array.from(
          { length: CHAINS },
          () => runChain(cells, ownerRuntime, failures),
        ),
      );
      console.log(
        `exhaustion matrix (${ownerRuntime} → ${runtime}): ${
          injected.reduce((a, b) => a + b)
        } faults injected; census ${JSON.stringify(census)}`,
      );
      assertEquals(failures, []);
    },
    { timeout: 600_000, skip: noStrace },
  );
}

/** Where a cell is, for the message of one that does not end in time. */
interface Progress {
  step: string;
  /** Set when the cell was given up: it must not start more processes. */
  abandoned?: boolean;
}

/**
 * Runs cells from `queue` one after the other, each next upgrade owning the
 * service for the next cell; after a failed cell, in a fresh place, since
 * what is left of the failed one may still be running. Returns how many
 * faults were injected.
 */
async function runChain(
  queue: Cell[],
  ownerRuntime: Runtime,
  failures: string[],
): Promise<number> {
  let injected = 0;
  while (queue.length > 0) {
    await withPlace(async (place) => {
      const web = `web=tcp:127.0.0.1:${await freePort()}`;
      let [owner] = await owning(place, [], web, ownerRuntime);
      for (let cell = queue.shift(); cell; cell = queue.shift()) {
        const at: Progress = { step: "start" };
        try {
          const result = await within(
            runCell(place, web, owner, ownerRuntime, cell, at),
            CELL_MS,
            () => `the cell, waiting for ${at.step}`,
          );
          owner = result.owner;
          if (result.injected) injected++;
        } catch (err) {
          at.abandoned = true;
          failures.push(`${describeCell(cell)}: ${(err as Error).message}`);
          return;
        }
      }
    });
  }
  return injected;
}

/**
 * The calls of each kind the owner's and the successor's main threads make
 * in an upgrade, from attaching strace until the successor is ready.
 */
async function countCalls(
  ownerRuntime: Runtime,
  web: string,
): Promise<Record<Side, Record<string, number>>> {
  let counts: Record<Side, Record<string, number>> | undefined;
  await withPlace(async (place) => {
    const [owner] = await owning(place, [], web, ownerRuntime);
    const trace = ["-e", `trace=${CALLS.join(",")}`];
    const ownerTrace = join(place.tmp, "owner.strace");
    const tracers = [
      await attachStrace(place.group, owner.pid, ownerTrace, trace),
    ];
    const successor = peerUnder(runtime, place, "--fd", web, "--hold");
    await successor.event("holding");
    const successorTrace = join(place.tmp, "successor.strace");
    tracers.push(
      await attachStrace(place.group, successor.pid, successorTrace, trace),
    );
    successor.child.kill("SIGUSR1");
    await successor.event("ready");
    await owner.child.exited;
    await Promise.all(tracers.map(detach));
    counts = {
      owner: mainThreadCalls(ownerTrace, owner.pid),
      successor: mainThreadCalls(successorTrace, successor.pid),
    };
  });
  return counts!;
}

/** How many calls of each kind the thread `pid` made in the trace file `path`. */
function mainThreadCalls(path: string, pid: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const call = line.match(new RegExp(`^${pid} +(\\w+)\\(`))?.[1];
    if (call) counts[call] = (counts[call] ?? 0) + 1;
  }
  return counts;
}

/**
 * Runs `cell` against `owner`, the current owner of `place` (under
 * `ownerRuntime`): a successor with the fault, then the next upgrade. Returns the process that owns the
 * service afterwards, and whether the fault was injected at all (a call
 * counted in the census may not come again).
 */
async function runCell(
  place: Place,
  web: string,
  owner: Peer,
  ownerRuntime: Runtime,
  cell: Cell,
  at: Progress,
): Promise<{ owner: Peer; injected: boolean }> {
  const start = (runtime: Runtime, ...args: string[]) => {
    if (at.abandoned) throw new Error("given up");
    return peerUnder(runtime, place, "--fd", web, "--serve", ...args);
  };
  at.step = "the owner's descriptor count";
  const before = (await owner.fds()).fds;
  const output = join(place.tmp, `${cell.side}.strace`);
  const fault = {
    syscall: cell.syscall,
    when: cell.when,
    action: `error=${cell.errno}`,
  };
  const tracers: Child[] = [];
  at.step = "strace";
  if (cell.side === "owner") {
    tracers.push(await injectFault(place.group, owner.pid, fault, output));
  }
  const successor = start(runtime, "--hold");
  at.step = "the successor to start";
  await successor.event("holding");
  at.step = "strace";
  if (cell.side === "successor") {
    tracers.push(await injectFault(place.group, successor.pid, fault, output));
  }
  successor.child.kill("SIGUSR1");
  at.step = "the successor to take over or fail";
  const outcome = await settled(successor);
  at.step = "strace to detach";
  await Promise.all(tracers.map(detach));
  const traced = cell.side === "owner" ? owner : successor;
  const injected = readFileSync(output, "utf8").split("\n").some((line) =>
    line.startsWith(`${traced.pid} `) && line.endsWith("(INJECTED)")
  );

  if (outcome.kind !== "ready" && cell.side === "successor" && injected) {
    // The call, or the library's own code the runtime was loading with it.
    const call = FUNCTION[cell.syscall] ?? cell.syscall;
    assert(
      outcome.message.includes(cell.errno) &&
        (outcome.message.includes(call) ||
          outcome.message.includes("loading")),
      `the successor's message names ${call} and ${cell.errno}: ${outcome.message}`,
    );
  }
  let current: Peer;
  if (outcome.kind === "ready") {
    at.step = "the old owner to exit";
    const exit = await owner.child.exited;
    assertEquals([exit.code, exit.signal], [0, null], "the old owner's exit");
    current = successor;
  } else {
    assertEquals(owner.child.exit, undefined, "the owner is running");
    at.step = "the owner's descriptor count";
    assertEquals((await owner.fds()).fds, before, "the owner's descriptors");
    current = owner;
  }

  // Under the owner's runtime: it owns the chain's next cell.
  const next = start(ownerRuntime);
  const started = Date.now();
  at.step = "the next upgrade";
  await within(next.event("ready"), WITHIN_MS, "the next upgrade ready");
  assert(
    Date.now() - started <= WITHIN_MS,
    `the next upgrade took ${Date.now() - started} ms`,
  );
  at.step = `pid ${current.pid} to exit after the next upgrade`;
  await current.gone();
  if (outcome.kind !== "ready") successor.child.kill("SIGKILL");
  return { owner: next, injected };
}

/**
 * Ends `strace`, which detaches from its process: with `SIGINT`, and with
 * `SIGKILL` if it has not ended within a second (detaching from all of a
 * Bun process's threads sometimes stalls; a tracer's death detaches too).
 */
async function detach(strace: Child): Promise<void> {
  strace.kill("SIGINT");
  await within(strace.exited, 1_000, "strace").catch(() => {
    strace.kill("SIGKILL");
    return strace.exited;
  });
}

/**
 * How the successor came out, within {@linkcode WITHIN_MS} of its release:
 * it took over, or it failed (`ready()` rejected, or it exited), with its
 * message.
 */
async function settled(
  successor: Peer,
): Promise<{ kind: "ready" } | { kind: "failed"; message: string }> {
  return await within(
    Promise.race([
      successor.event("ready").then(() => ({ kind: "ready" as const })),
      successor.event("failed").then((e) => ({
        kind: "failed" as const,
        message: e.error,
      })),
      successor.child.exited.then(() => ({
        kind: "failed" as const,
        message: successor.child.stderrTail,
      })),
    ]),
    WITHIN_MS,
    "the successor took over or failed",
  );
}
