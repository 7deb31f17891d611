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
 * @example
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 *
 * await using upgrader = await Upgrader.create("/run/my-service");
 * const web = upgrader.fds.listen("web", { hostname: "127.0.0.1", port: 8080 });
 * // serve on web.fd with an adapter, e.g. "@tableroll/tableroll/deno"
 * await upgrader.ready();
 * await upgrader.upgradeComplete; // drain, then exit
 * ```
 *
 * @module
 */
export {
  Upgrader,
  type UpgraderOptions,
  type UpgraderState,
} from "./src/upgrader.ts";
export {
  type Descriptor,
  type Fds,
  type ListenAddress,
  type Listener,
  type OpenFileOptions,
} from "./src/fds.ts";
export { upgradeOnSignal, type UpgradeOptions } from "./src/self_upgrade.ts";
export { SystemdNotifier } from "./src/notify.ts";
export type { Logger } from "./src/logger.ts";
export type { DescriptorKind } from "./src/protocol.ts";
export * from "./src/errors.ts";
export type { InetAddress, SocketAddress, UnixAddress } from "./ffi/mod.ts";
