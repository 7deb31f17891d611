/**
 * Zero-downtime upgrades for Deno and Bun services, wire-compatible with Go
 * tableroll (protocol version 1).
 *
 * Start a new copy of a service with the same coordination directory: it
 * receives the old copy's listening sockets over a Unix socket, both accept
 * on them until the new copy calls `ready()`, then the old copy drains and
 * exits. No connection is refused.
 *
 * Deno needs `--allow-ffi` (libc is reached through FFI) plus the
 * permissions the service itself needs.
 *
 * @example Serve HTTP, hand over to the next copy, drain
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { mkdtempSync, rmSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/serve";
 *
 * const dir = mkdtempSync(join(tmpdir(), "tableroll-example-"));
 * const start = async (version: string) => {
 *   const upgrader = await Upgrader.create(dir, { id: version });
 *   const server = await serve({
 *     upgrader,
 *     name: "web", // the same name in every version
 *     hostname: "127.0.0.1",
 *     port: 0, // 0: any port; a successor inherits the same one
 *     handler: () => new Response(version),
 *     onListen() {},
 *   });
 *   await upgrader.ready(); // the owner now; a predecessor drains
 *   return { upgrader, server };
 * };
 *
 * const v1 = await start("v1");
 * const url = `http://127.0.0.1:${(v1.server.address as { port: number }).port}/`;
 * strictEqual(await (await fetch(url)).text(), "v1");
 * const v2 = await start("v2");
 * await v1.server.finished; // v1 drained after v2 took over
 * strictEqual(await (await fetch(url)).text(), "v2");
 *
 * await v1.upgrader.stop();
 * await v2.server.stop();
 * await v2.upgrader.stop();
 * rmSync(dir, { recursive: true });
 * ```
 *
 * @module
 */
export {
  type TakeoverStep,
  Upgrader,
  type UpgraderOptions,
  type UpgraderState,
} from "./src/upgrader.ts";
export type { Logger, UpgraderEvent } from "./src/events.ts";
export type { Descriptor, Fds, ListenAddress, Listener } from "./src/fds.ts";
export { TablerollError, type TablerollErrorCode } from "./src/errors.ts";
export type { SocketAddress } from "./ffi/socket.ts";
