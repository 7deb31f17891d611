/**
 * The drain of keep-alive connections, after a handover and after the
 * application stopped the server: idle connections stay open for the grace
 * period, requests on them are answered with `Connection: close`, and a
 * response that began before the drain still ends the connection.
 */
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { freePort } from "../testing/rolling.ts";
import {
  type CopySpec,
  get,
  keepAliveConnection,
  startServer,
  withService,
} from "./fixtures/adapter_copies.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

/** `test` for the node:http adapter: skipped where it cannot serve. */
const testNode = await nodeAdapterTest(runtime);

const TIMEOUT_MS = 20_000;

/** What begins the drain: a successor's takeover, or `SIGUSR2`, which stops the server. */
type Trigger = "takeover" | "stop";

const graceCases: { label: string; copy: CopySpec; trigger: Trigger }[] = [
  {
    label: `${runtime}, taken over`,
    copy: { adapter: runtime },
    trigger: "takeover",
  },
  {
    label: `node on ${runtime}, taken over`,
    copy: { adapter: "node", runtime },
    trigger: "takeover",
  },
  {
    label: `${runtime}, stopped through its signal`,
    copy: { adapter: runtime, signal: true },
    trigger: "stop",
  },
  {
    label: `node on ${runtime}, stopped through its signal`,
    copy: { adapter: "node", runtime, signal: true },
    trigger: "stop",
  },
];
for (const { label, copy, trigger } of graceCases) {
  const it = copy.adapter === "node" ? testNode : test;
  it(`adapter: ${label}, keeps idle keep-alive connections for the grace period`, () =>
    withService(async (group, tmp) => {
      const port = await freePort();
      const grace = 1500;
      const spec = { dir: join(tmp, "dir"), addr: `127.0.0.1:${port}`, grace };
      const first = startServer(group, copy, spec);
      await first.ready();
      const busy = await keepAliveConnection(port);
      const idle = await keepAliveConnection(port);
      try {
        for (const conn of [busy, idle]) {
          const { head, pid } = await conn.get();
          assertEquals(pid, first.child.pid);
          assert(!head.includes("connection: close"), head);
        }
        const second = trigger === "takeover"
          ? startServer(group, copy, spec)
          : undefined;
        if (second) await second.ready();
        else {
          first.child.kill("SIGUSR2");
          await first.child.waitForLine(/^SERVER STOPPED /, TIMEOUT_MS);
        }
        const drainedFrom = Date.now();
        await new Promise((resolve) => setTimeout(resolve, grace / 3));
        // Still served by the old process, which asks the client to move on.
        const during = await busy.get();
        assertEquals(during.pid, first.child.pid);
        assert(during.head.includes("connection: close"), during.head);
        const idleClosedAfter = (await idle.closed) - drainedFrom;
        assert(
          idleClosedAfter > grace - 500,
          `idle connection closed ${idleClosedAfter} ms after the drain began`,
        );
        if (second) {
          await first.gone();
          assertEquals(await get({ port }), second.child.pid);
        } else {
          await first.child.waitForLine(/^DRAINED /, TIMEOUT_MS);
        }
      } finally {
        busy.destroy();
        idle.destroy();
      }
    }));
}

test(`adapter: ${runtime} closes a keep-alive connection whose response began before the drain`, () =>
  withService(async (group, tmp) => {
    const port = await freePort();
    const spec = {
      dir: join(tmp, "dir"),
      addr: `127.0.0.1:${port}`,
      grace: 300,
      deadline: 10_000,
    };
    const first = startServer(group, { adapter: runtime }, spec);
    await first.ready();
    const conn = await keepAliveConnection(port);
    try {
      const streaming = conn.get("/stream?ms=1500");
      await new Promise((resolve) => setTimeout(resolve, 100));
      const second = startServer(group, { adapter: runtime }, spec);
      await second.ready();
      const handedOverAt = Date.now();
      assertEquals((await streaming).pid, first.child.pid);
      await first.gone();
      const drainedAfter = Date.now() - handedOverAt;
      assert(
        drainedAfter < 5000,
        `drained ${drainedAfter} ms after the handover, not long before the deadline`,
      );
      await conn.closed;
    } finally {
      conn.destroy();
    }
  }));
