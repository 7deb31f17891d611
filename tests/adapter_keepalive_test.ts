/**
 * The drain of keep-alive connections after a handover, on each adapter:
 * idle connections stay open for the grace period, requests on them are
 * answered with `Connection: close`, and a response that began before the
 * drain still ends the connection.
 */
import { connect } from "node:net";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { freePort } from "../testing/rolling.ts";
import {
  type CopySpec,
  get,
  startServer,
  withService,
} from "./fixtures/adapter_copies.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

/** `test` for the node:http adapter: skipped where it cannot serve. */
const testNode = await nodeAdapterTest(runtime);

/** A raw keep-alive HTTP/1.1 connection: send a request, read one response. */
async function keepAliveConnection(port: number) {
  const socket = connect(port, "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  let buffered = "";
  let waiting: (() => void) | undefined;
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    waiting?.();
  });
  const closed = new Promise<number>((resolve) =>
    socket.once("close", () => resolve(Date.now()))
  );
  return {
    closed,
    /** Sends GET `path` and resolves with the response head and pid (any framing). */
    async get(path = "/"): Promise<{ head: string; pid: number }> {
      buffered = "";
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
      for (;;) {
        const match = /^([\s\S]*?)\r\n\r\n[\s\S]*?hello from (\d+)\n/.exec(
          buffered,
        );
        if (match) {
          return { head: match[1].toLowerCase(), pid: Number(match[2]) };
        }
        await Promise.race([
          new Promise<void>((resolve) => waiting = resolve),
          closed.then(() => {
            throw new Error(
              `connection closed; got ${JSON.stringify(buffered)}`,
            );
          }),
        ]);
      }
    },
    destroy: () => socket.destroy(),
  };
}

const graceCopies: { label: string; copy: CopySpec }[] = [
  { label: runtime, copy: { adapter: runtime } },
  { label: "node", copy: { adapter: "node", runtime } },
];
if (runtime === "deno") {
  graceCopies.push({
    label: "deno given upgrader.signal",
    copy: { adapter: "deno", signal: true },
  });
}
for (const { label, copy } of graceCopies) {
  const it = copy.adapter === "node" ? testNode : test;
  it(`adapter: ${label} on ${runtime} keeps idle keep-alive connections for the grace period`, () =>
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
        const second = startServer(group, copy, spec);
        await second.ready();
        const handedOverAt = Date.now();
        await new Promise((resolve) => setTimeout(resolve, grace / 3));
        // Still served by the old process, which asks the client to move on.
        const during = await busy.get();
        assertEquals(during.pid, first.child.pid);
        assert(during.head.includes("connection: close"), during.head);
        const idleClosedAfter = (await idle.closed) - handedOverAt;
        assert(
          idleClosedAfter > grace - 500,
          `idle connection closed ${idleClosedAfter} ms after the handover`,
        );
        await first.gone();
        assertEquals(await get({ port }), second.child.pid);
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
