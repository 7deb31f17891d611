/**
 * The fault matrix: a handover of one TCP listener, with the owner or the
 * successor killed (or a call failed) at each step of the exchange by
 * `strace -e inject`. Afterwards exactly one process owns and serves the
 * port, `<dir>/pid` names it, the lock is free, the survivor holds no more
 * descriptors than it should, and its log says what happened.
 *
 * Steps, with one listener (each read and write is one system call, see
 * ControlConn): successor connect#1; recvmsg #1 metadata length, #2
 * metadata, #3 descriptor, sendmsg #1 ready, recvmsg #4/#5 stepping down,
 * and the owner record (the 4th open of `<dir>/pid`). Owner (attached once
 * it is ready): accept4#1, sendmsg #1 metadata, #2 descriptor, recvmsg #1
 * ready byte, #2/#3 ready blob, sendmsg #3 stepping down; getsockopt#1
 * is the owner reading the successor's credentials. Each file runs
 * its runtime's pair and the cross-runtime pair that ends in it, so both
 * runtime runs together cover Deno→Deno, Bun→Bun, Deno→Bun and Bun→Deno.
 */
import { join } from "node:path";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { freePort } from "../testing/rolling.ts";
import {
  assertOwner,
  lockIsFree,
  owning,
  peerUnder,
  withPlace,
} from "./fixtures/places.ts";
import {
  describeFault,
  type Fault,
  injectFault,
  straceCannotAttach,
} from "./fixtures/faults.ts";

type Runtime = "deno" | "bun";

// Deno's update check opens a socket at a time of its own, which the
// descriptor counts below would take for a leak.
process.env.DENO_NO_UPDATE_CHECK = "1";

/** One cell of the matrix. */
interface Case {
  /** Whose call fails. */
  side: "owner" | "successor";
  fault: Fault;
  /** Who owns the port afterwards. */
  survivor: "owner" | "successor";
  /** What the survivor logs (a pattern on the JSON-encoded message); `null`: nothing to say. */
  says: RegExp | null;
}

const kill = "signal=SIGKILL";

const CASES: Case[] = [
  // The successor dies: the owner keeps serving.
  ...([
    ["connect", 1, null],
    ["recvmsg", 1, /handover to pid \d+ failed, still the owner/],
    ["recvmsg", 3, /handover to pid \d+ failed, still the owner/],
    ["sendmsg", 1, /handover to pid \d+ failed, still the owner/],
    ["recvmsg", 4, /pid \d+ went away before recording itself as owner/],
    ["openat", 4, /pid \d+ went away before recording itself as owner/],
  ] as const).map(([syscall, when, says]): Case => ({
    side: "successor",
    fault: {
      syscall,
      when,
      action: kill,
      path: syscall === "openat" ? "pid" : undefined,
    },
    survivor: "owner",
    says,
  })),
  // The owner dies: the successor serves, with what it received or anew.
  ...([
    ["accept4", 1, /died while handing over; starting with the 0 of 0/],
    ["sendmsg", 1, /died while handing over; starting with the 0 of 0/],
    ["sendmsg", 2, /died while handing over; starting with the 0 of 1/],
    ["recvmsg", 1, /died before stepping down; taking over/],
    ["recvmsg", 3, /died before stepping down; taking over/],
    ["sendmsg", 3, /died before stepping down; taking over/],
  ] as const).map(([syscall, when, says]): Case => ({
    side: "owner",
    fault: { syscall, when, action: kill },
    survivor: "successor",
    says,
  })),
  // A Unix socket refuses only when nobody listens: the successor starts
  // without a predecessor, cannot bind the port the owner still serves, and
  // fails; the owner serves on.
  {
    side: "successor",
    fault: { syscall: "connect", when: 1, action: "error=ECONNREFUSED" },
    survivor: "owner",
    says: null,
  },
  // Calls that fail and are retried: the handover completes.
  ...([
    ["successor", "connect", 1, "error=EAGAIN"], // the owner's backlog is full
    ["successor", "recvmsg", 2, "error=EINTR"],
    ["successor", "connect", 1, "error=EINTR"],
    ["owner", "sendmsg", 2, "error=EINTR"],
    ["owner", "accept4", 1, "error=EINTR"],
  ] as const).map(([side, syscall, when, action]): Case => ({
    side,
    fault: { syscall, when, action },
    survivor: "successor",
    says: /inherited 1 descriptors/,
  })),
  // The owner cannot read a successor's credentials: it closes the
  // connection (nothing leaks) and keeps serving; the successor gives up.
  {
    side: "owner",
    fault: { syscall: "getsockopt", when: 1, action: "error=ENOBUFS" },
    survivor: "owner",
    says: /refused a connection whose credentials cannot be read/,
  },
  // A connection reset mid-transfer: the successor gives up, the owner serves.
  {
    side: "successor",
    fault: { syscall: "recvmsg", when: 2, action: "error=ECONNRESET" },
    survivor: "owner",
    says: /handover to pid \d+ failed, still the owner/,
  },
];

/** How many cells run at once. */
const PARALLEL = 3;
/** How long one cell may take. */
const CASE_MS = 60_000;

/** Why strace cannot inject faults here, if it cannot. */
const noStrace = await straceCannotAttach();

for (
  const ownerRuntime of [runtime, runtime === "deno" ? "bun" : "deno"] as const
) {
  test(
    `fault matrix (${ownerRuntime} → ${runtime}): whatever dies at whatever step, one process serves`,
    async () => {
      const baseline = await freshDescriptors();
      const failures: string[] = [];
      const queue = [...CASES];
      await Promise.all(
        Array.from({ length: PARALLEL }, async () => {
          for (let c = queue.shift(); c; c = queue.shift()) {
            const label = `${c.side} ${describeFault(c.fault)}`;
            let timer: ReturnType<typeof setTimeout> | undefined;
            try {
              await Promise.race([
                runCase(c, ownerRuntime, baseline),
                new Promise((_, reject) => {
                  timer = setTimeout(
                    () => reject(new Error(`not done in ${CASE_MS} ms`)),
                    CASE_MS,
                  );
                }),
              ]);
            } catch (err) {
              failures.push(`${label}: ${(err as Error).message}`);
            } finally {
              clearTimeout(timer);
            }
          }
        }),
      );
      assertEquals(failures, []);
    },
    { timeout: 240_000, skip: noStrace },
  );
}

/** The descriptors a fresh owner of `web` holds, per runtime. */
async function freshDescriptors(): Promise<Record<Runtime, number>> {
  const counts = {} as Record<Runtime, number>;
  for (const r of ["deno", "bun"] as const) {
    await withPlace(async (place) => {
      const [p] = await owning(place, [], await webSpec(), r);
      counts[r] = (await p.fds()).fds;
    });
  }
  return counts;
}

async function webSpec(): Promise<string> {
  return `web=tcp:127.0.0.1:${await freePort()}`;
}

async function runCase(
  c: Case,
  ownerRuntime: Runtime,
  baseline: Record<Runtime, number>,
): Promise<void> {
  await withPlace(async (place) => {
    const web = await webSpec();
    const [owner, port] = await owning(place, [], web, ownerRuntime);
    const ownerFds = (await owner.fds()).fds;
    const fault = {
      ...c.fault,
      path: c.fault.path && join(place.dir, c.fault.path),
    };
    if (c.side === "owner") await injectFault(place.group, owner.pid, fault);
    const successor = peerUnder(
      runtime,
      place,
      "--fd",
      web,
      "--serve",
      "--hold",
    );
    await successor.event("holding");
    if (c.side === "successor") {
      await injectFault(place.group, successor.pid, fault);
    }
    successor.child.kill("SIGUSR1");

    const [survivor, victim] = c.survivor === "owner"
      ? [owner, successor]
      : [successor, owner];
    if (c.fault.action === kill) {
      const exit = await victim.child.exited;
      assertEquals(exit.signal, "SIGKILL", `the ${c.side} was killed`);
    } else if (c.survivor === "owner") {
      await victim.event("failed").catch(() => {}); // exits with its error
    } else {
      await victim.gone(); // the old owner drained and exited 0
    }
    if (c.survivor === "successor") await survivor.event("ready");
    if (c.says) await survivor.log("\\w+", c.says);
    await assertOwner(place, survivor, port);
    assert(lockIsFree(place), "the lock is free");
    const expected = survivor === owner
      ? ownerFds
      : baseline[runtime as Runtime];
    // A leak stays; a runtime's own short-lived descriptor goes again.
    let held = (await survivor.fds()).fds;
    for (
      const end = Date.now() + 2000;
      held !== expected && Date.now() < end;
    ) {
      held = (await survivor.fds()).fds;
    }
    assertEquals(held, expected, `descriptors of the ${c.survivor}`);
  });
}
