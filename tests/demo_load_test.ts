import { createServer } from "node:http";
import process from "node:process";
import { assert, assertEquals } from "./support/assert.ts";
import { test } from "./support/harness.ts";
import { type Load, startLoad } from "../testing/load.ts";
import { freePort } from "../testing/rolling.ts";

/** Back-to-back load from two clients of each kind. */
function loadOf(port: number, maxRequests: number): Load {
  return startLoad({
    hostname: "127.0.0.1",
    port,
    keepAliveClients: 2,
    newConnectionClients: 2,
    rate: 0,
    maxRequests,
  });
}

test("the load sends exactly maxRequests and reads the serving pid", async () => {
  const server = createServer((_req, res) =>
    res.end(`hello from ${process.pid}\n`)
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  try {
    const load = loadOf(port, 40);
    await load.done;
    assertEquals(load.samples.length, 40);
    assert(load.samples.every((s) => s.pid === process.pid && !s.error));
    const kinds = new Set(load.samples.map((s) => s.kind));
    assertEquals([...kinds].sort(), ["keep-alive", "new-connection"]);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

test("a refused connection is a failed sample, not a retry", async () => {
  const load = loadOf(await freePort(), 4);
  await load.done;
  assertEquals(load.samples.length, 4);
  assert(
    load.samples.every((s) => s.pid === null && s.error === "ECONNREFUSED"),
  );
});
