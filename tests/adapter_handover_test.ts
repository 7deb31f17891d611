import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";
import { startLoad } from "../testing/load.ts";
import {
  type CopySpec,
  get,
  type ServerCopy,
  type ServiceSpec,
  startServer,
  startSlow,
  type Target,
} from "./fixtures/adapter_copies.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

const other = runtime === "deno" ? "bun" : "deno";
/** `test` for the node:http adapter: skipped where it cannot serve. */
const testNode = await nodeAdapterTest(runtime);
const testOf = (adapter: string) => adapter === "node" ? testNode : test;
const SLOW_MS = 1000;

/** Runs `body` with a process group and a temp dir, cleaning both up. */
async function withService(
  body: (group: ProcessGroup, tmp: string) => Promise<void>,
): Promise<void> {
  const group = new ProcessGroup();
  const tmp = mkdtempSync(join(tmpdir(), "tableroll-adapter-"));
  try {
    await body(group, tmp);
  } finally {
    await group.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Starts copy 0, then replaces it `upgrades` times under loopback load
 * (keep-alive and new-connection clients). Before each upgrade a slow
 * request goes to the serving copy; it must be answered by that copy.
 * Every old copy must drain and exit 0; no request may fail.
 */
function rollingUpgrades(
  copyOf: (i: number) => CopySpec,
  upgrades: number,
): Promise<void> {
  return withService(async (group, tmp) => {
    const port = await freePort();
    const service: ServiceSpec = {
      dir: join(tmp, "dir"),
      addr: `127.0.0.1:${port}`,
    };
    const target: Target = { port };
    let current = startServer(group, copyOf(0), service);
    await current.ready();
    const load = startLoad({
      hostname: "127.0.0.1",
      port,
      keepAliveClients: 4,
      newConnectionClients: 4,
      rate: 400,
      maxRequests: 1_000_000,
    });
    try {
      for (let i = 1; i <= upgrades; i++) {
        const slow = await startSlow(target, SLOW_MS);
        const next = startServer(group, copyOf(i), service);
        await next.ready();
        await current.gone();
        assertEquals(await slow.answer, current.child.pid, `upgrade ${i}`);
        current = next;
      }
    } finally {
      await load.stop();
    }
    const failed = load.samples.filter((s) => s.error);
    assertEquals(failed.slice(0, 5), [], `${failed.length} failed requests`);
    const pids = new Set(load.samples.map((s) => s.pid));
    assert(load.samples.length > upgrades * 50, "too little traffic");
    assertEquals(pids.size, upgrades + 1, "every copy served the load");
  });
}

/** One handover from `first` to `second` with a slow request in flight. */
function singleHandover(
  copy: CopySpec,
  service: (tmp: string, port: number) => ServiceSpec,
  check?: (first: ServerCopy, port: number) => Promise<void>,
): Promise<void> {
  return withService(async (group, tmp) => {
    const port = await freePort();
    const spec = service(tmp, port);
    const target: Target = {
      port: spec.unix ? undefined : port,
      socketPath: spec.unix,
      tls: spec.tls,
    };
    const first = startServer(group, copy, spec);
    await first.ready();
    await check?.(first, port);
    assertEquals(await get(target), first.child.pid);
    const slow = await startSlow(target, SLOW_MS);
    const second = startServer(group, copy, spec);
    await second.ready();
    await first.gone();
    assertEquals(await slow.answer, first.child.pid);
    assertEquals(await get(target), second.child.pid);
  });
}

test(
  `adapter: ${runtime} native server hands over 20 times under load`,
  () => rollingUpgrades(() => ({ adapter: runtime }), 20),
  { timeout: 120_000 },
);

testNode(
  `adapter: node:http on ${runtime} hands over 10 times under load`,
  () => rollingUpgrades(() => ({ adapter: "node", runtime }), 10),
  { timeout: 90_000 },
);

test(
  `adapter: ${runtime} and ${other} native servers hand over to each other 20 times`,
  () =>
    rollingUpgrades(
      (i) => ({ adapter: i % 2 === 0 ? runtime : other }),
      20,
    ),
  { timeout: 120_000 },
);

test(
  `adapter: the runtime-neutral serve on ${runtime} and on ${other} hands over to each other`,
  () =>
    rollingUpgrades(
      (i) => ({ adapter: "serve", runtime: i % 2 === 0 ? runtime : other }),
      4,
    ),
  { timeout: 90_000 },
);

for (const adapter of [runtime, "node", "serve"] as const) {
  const it = testOf(adapter);
  it(`adapter: ${adapter} on ${runtime} reports the real address`, () =>
    singleHandover(
      { adapter, runtime },
      (tmp, port) => ({ dir: join(tmp, "dir"), addr: `127.0.0.1:${port}` }),
      async (first, port) => {
        const native = adapter !== runtime
          ? undefined
          : runtime === "deno"
          ? { transport: "tcp", hostname: "127.0.0.1", port }
          : { hostname: "127.0.0.1", port, url: `http://127.0.0.1:${port}/` };
        assertEquals(await first.address(), {
          address: { family: "inet", hostname: "127.0.0.1", port },
          ...(native && { native }),
        });
        if (adapter === "bun") {
          const seen = await fetch(`http://127.0.0.1:${port}/port`);
          assertEquals(await seen.text(), String(port), "the handler's server");
        }
      },
    ));
}

for (const adapter of [runtime, "node"] as const) {
  const bunHttps = adapter === "node" && runtime === "bun";
  const it = testOf(adapter);
  it(
    `adapter: ${adapter} on ${runtime} hands over a TLS listener`,
    () =>
      singleHandover({ adapter, runtime }, (tmp, port) => ({
        dir: join(tmp, "dir"),
        addr: `127.0.0.1:${port}`,
        tls: true,
      })),
    { ignore: bunHttps },
  );

  it(`adapter: ${adapter} on ${runtime} hands over a Unix listener`, () =>
    singleHandover({ adapter, runtime }, (tmp) => ({
      dir: join(tmp, "dir"),
      unix: join(tmp, "web.sock"),
    })));
}

testNode(
  "adapter: node:https is refused on Bun",
  () =>
    withService(async (group, tmp) => {
      const port = await freePort();
      const copy = startServer(group, { adapter: "node", runtime: "bun" }, {
        dir: join(tmp, "dir"),
        addr: `127.0.0.1:${port}`,
        tls: true,
      });
      const exit = await copy.child.exited;
      assertEquals(exit.code, 1);
      assert(
        copy.child.stderrTail.includes(
          "use @tableroll/tableroll/bun with its tls option",
        ),
        copy.child.stderrTail,
      );
    }),
  { ignore: runtime !== "bun" },
);

test(`adapter: a WebSocket on ${runtime} stays open until the drain deadline`, () =>
  withService(async (group, tmp) => {
    const port = await freePort();
    const spec = {
      dir: join(tmp, "dir"),
      addr: `127.0.0.1:${port}`,
      deadline: 1500,
    };
    const first = startServer(group, { adapter: runtime }, spec);
    await first.ready();
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    const messages: string[] = [];
    const closed = new Promise<{ code: number; at: number }>((resolve) =>
      ws.onclose = (e) => resolve({ code: e.code, at: Date.now() })
    );
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const echo = (text: string) =>
      new Promise<void>((resolve) => {
        ws.onmessage = (e) => {
          messages.push(String(e.data));
          resolve();
        };
        ws.send(text);
      });
    await echo("before");
    const second = startServer(group, { adapter: runtime }, spec);
    await second.ready();
    const handedOverAt = Date.now();
    await echo("after");
    const { code, at } = await closed;
    await first.gone();
    assertEquals(messages, ["before", "after"]);
    assertEquals(code, 1001);
    assert(
      at - handedOverAt > 1000,
      `closed ${at - handedOverAt} ms after the handover`,
    );
  }));

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
  const it = testOf(copy.adapter);
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
