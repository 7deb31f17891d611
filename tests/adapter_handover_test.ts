import { join } from "node:path";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
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
  webSocketEcho,
  withService,
} from "./fixtures/adapter_copies.ts";
import { nodeAdapterTest } from "./support/node_adapter.ts";

const other = runtime === "deno" ? "bun" : "deno";
/** `test` for the node:http adapter: skipped where it cannot serve. */
const testNode = await nodeAdapterTest(runtime);
const testOf = (adapter: string) => adapter === "node" ? testNode : test;
const SLOW_MS = 1000;

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
  it(`adapter: ${adapter} on ${runtime} reports the real address, to onListen too`, () =>
    singleHandover(
      { adapter, runtime },
      (tmp, port) => ({ dir: join(tmp, "dir"), addr: `127.0.0.1:${port}` }),
      async (first, port) => {
        const native = adapter !== runtime
          ? undefined
          : runtime === "deno"
          ? { transport: "tcp", hostname: "127.0.0.1", port }
          : { hostname: "127.0.0.1", port, url: `http://127.0.0.1:${port}/` };
        const address = { family: "inet", hostname: "127.0.0.1", port };
        assertEquals(await first.address(), {
          address,
          listened: address,
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
  const bunHttps = adapter === "node" && runtime === "bun"
    ? "the node:http adapter refuses node:https on Bun (checked below)"
    : undefined;
  const it = testOf(adapter);
  it(
    `adapter: ${adapter} on ${runtime} hands over a TLS listener`,
    () =>
      singleHandover({ adapter, runtime }, (tmp, port) => ({
        dir: join(tmp, "dir"),
        addr: `127.0.0.1:${port}`,
        tls: true,
      })),
    { skip: bunHttps },
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
  { skip: onlyUnder("bun", "the refusal is of Bun's node:https") },
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
    const ws = await webSocketEcho(port);
    const messages = [await ws.echo("before")];
    const second = startServer(group, { adapter: runtime }, spec);
    await second.ready();
    const handedOverAt = Date.now();
    messages.push(await ws.echo("after"));
    const { code, at } = await ws.closed;
    await first.gone();
    assertEquals(messages, ["before", "after"]);
    assertEquals(code, 1001);
    assert(
      at - handedOverAt > 1000,
      `closed ${at - handedOverAt} ms after the handover`,
    );
  }));
