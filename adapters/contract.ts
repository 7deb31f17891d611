/**
 * The contract between the upgrader and the adapters, in both directions:
 * what every adapter's `serve` takes from an upgrader
 * ({@linkcode HandoverOptions}) and the handle it
 * gives back on top of the runtime's own server ({@linkcode HandedOverServer}).
 *
 * @module
 */
import type { SocketAddress } from "../ffi/mod.ts";
import type { ListenAddress, Upgrader } from "../mod.ts";
import type { DrainOptions } from "./drain.ts";

export type { DrainOptions, ListenAddress };
export type { InetAddress, SocketAddress, UnixAddress } from "../ffi/mod.ts";

/** A listener the upgrader's descriptor store owns. */
export interface StoreListener {
  /** The store's descriptor: never close it; duplicate it to keep a copy. */
  readonly fd: number;
  /** The socket's real address. */
  readonly address: SocketAddress;
}

/** What every adapter's `serve` takes besides the server's own options. */
export interface HandoverOptions extends DrainOptions {
  /** The upgrader whose descriptor store holds the listener. */
  upgrader: Upgrader;
  /** The listener's name, the same in every version of the service. */
  name: string;
}

/**
 * The handle every adapter's server has, whatever the runtime: the Deno
 * adapter's `Deno.HttpServer`, the Bun adapter's server and the `node:http`
 * adapter's result all carry it.
 *
 * @example Stop one way on every runtime
 * ```ts ignore
 * const server = serve({ upgrader, name: "web", port: 8080, handler });
 * console.log(server.address); // { family: "inet", hostname: "0.0.0.0", port: 8080 }
 * await server.stop();
 * ```
 */
export interface HandedOverServer extends AsyncDisposable {
  /** The listener's real address (the port the kernel chose for port 0). */
  readonly address: SocketAddress;
  /**
   * Resolves when the server stopped: after {@linkcode HandedOverServer.stop},
   * or after the drain that follows a successor's takeover (requests done,
   * WebSockets closed).
   */
  readonly finished: Promise<void>;
  /**
   * Stops accepting on this process's copy of the listener, answers with
   * `Connection: close` for the grace period (`drainGracePeriod`), lets
   * requests in flight finish and closes idle connections; resolves with
   * {@linkcode HandedOverServer.finished}. The disposers call it.
   */
  stop(): Promise<void>;
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
