/**
 * What the adapters need from an upgrader: a named listener and the moment a
 * successor took over. The upgrader of `tableroll` satisfies it.
 *
 * @module
 */
import type { SocketAddress } from "../ffi/mod.ts";
import type { ListenAddress } from "../mod.ts";
import type { DrainOptions } from "./drain.ts";

export type { ListenAddress };

/** A listener the upgrader's descriptor store owns. */
export interface StoreListener {
  /** The store's descriptor: never close it; duplicate it to keep a copy. */
  readonly fd: number;
  /** The socket's real address. */
  readonly address: SocketAddress;
}

/**
 * The part of an upgrader the adapters use.
 *
 * @example
 * ```ts ignore
 * import { Upgrader } from "tableroll";
 * const upgrader: ListenerSource = await Upgrader.create(dir);
 * ```
 */
export interface ListenerSource {
  /** The descriptor store. */
  readonly fds: {
    /** Inherits the listener `name` from the predecessor, or opens it. */
    listen(name: string, address: ListenAddress): StoreListener;
  };
  /** Resolves when a successor took over: time to drain. */
  readonly upgradeComplete: Promise<void>;
}

/**
 * The listen address a runtime's serve options describe: `path` for Unix,
 * else `hostname` (default all interfaces) and `port` (default
 * `defaultPort`, the runtime's own default).
 *
 * @example
 * ```ts ignore
 * listenAddressOf({ port: 8080 }, 8000); // { hostname: "0.0.0.0", port: 8080 }
 * ```
 */
export function listenAddressOf(
  options: { hostname?: string; port?: number | string; path?: string },
  defaultPort: number,
): ListenAddress {
  if (options.path !== undefined) return { path: options.path };
  return {
    hostname: options.hostname ?? "0.0.0.0",
    port: Number(options.port ?? defaultPort),
  };
}

/** What every adapter's `serve` takes besides the server's own options. */
export interface HandoverOptions extends DrainOptions {
  /** The upgrader whose descriptor store holds the listener. */
  upgrader: ListenerSource;
  /** The listener's name, the same in every version of the service. */
  name: string;
}
