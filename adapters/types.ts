/**
 * The types every adapter's public surface re-exports.
 *
 * @module
 */
export type { DrainOptions } from "./drain.ts";
export type {
  HandoverOptions,
  ListenAddress,
  ListenerSource,
  StoreListener,
} from "./upgrader.ts";
export type { InetAddress, SocketAddress, UnixAddress } from "../ffi/mod.ts";
