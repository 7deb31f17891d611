/**
 * The one shape of every adapter's `serve`: the options they all take, with
 * the same names, meaning and defaults on Deno and Bun
 * ({@linkcode CommonServeOptions}), and the handle every server they return
 * carries ({@linkcode HandedOverServer}). The runtime-neutral entry point
 * (`@tableroll/tableroll/serve`) exports both.
 *
 * @module
 */
import type { SocketAddress } from "../ffi/socket.ts";
import type { ListenAddress } from "../src/fds.ts";
import type { Upgrader } from "../src/upgrader.ts";

/**
 * The port every adapter listens on without a `port`, on Deno and Bun alike:
 * `Deno.serve`'s default. (`Bun.serve`'s own, `$PORT` or else 3000, would
 * make one program listen on another port under each runtime.)
 */
const DEFAULT_PORT = 8000;

/**
 * What every adapter's `serve` takes, besides its runtime's own server
 * options (`Deno.serve`'s handler, `Bun.serve`'s `fetch`, a `node:http`
 * server…).
 *
 * The address (`hostname` and `port`, or `path`) is where a process
 * listens when no predecessor handed the listener over; a listener handed
 * over must be on that same address.
 */
export interface CommonServeOptions {
  /** The upgrader whose descriptors hold the listener. */
  upgrader: Upgrader;
  /** The listener's name, the same in every version of the service. */
  name: string;
  /** The IP address to listen on. Default `"0.0.0.0"`: every IPv4 interface. */
  hostname?: string;
  /**
   * The port to listen on; `0` lets the kernel choose (a successor gets the
   * same socket, so the same port). Default 8000, on every adapter and
   * runtime: Bun's `$PORT` is not read (pass `port: Number(process.env.PORT)`
   * for that).
   */
  port?: number;
  /** A Unix socket path to listen on, instead of `hostname` and `port`. */
  path?: string;
  /**
   * Stops the server when aborted, exactly as {@linkcode HandedOverServer.stop}
   * does (a signal aborted already stops it as soon as it serves).
   */
  signal?: AbortSignal;
  /**
   * Milliseconds, after a successor took over or after `stop()`, during
   * which clients that send a request are answered with `Connection: close`
   * before idle keep-alive connections are closed. Default 1000. `0` stops
   * at once; a takeover still waits 50 ms for connections accepted just
   * before it.
   */
  drainGracePeriod?: number;
  /**
   * Milliseconds after a takeover when WebSockets are closed (1001) and
   * remaining connections are cut (Bun and `node:http`; `Deno.serve`
   * cannot cut a request in flight, so there the drain waits for it).
   * Default 30 000.
   */
  drainDeadline?: number;
  /**
   * Called once the server serves, before `serve` resolves, with the
   * listener's real address (the kernel's port for port 0). Default: logs
   * `Listening on <url>`.
   */
  onListen?(address: SocketAddress): void;
}

/**
 * The handle every adapter's server carries, whatever the runtime: the
 * Deno adapter's `Deno.HttpServer`, the Bun adapter's server and the
 * `node:http` server the `node:http` adapter was given all have it.
 *
 * @example Stop one way on every runtime
 * ```ts ignore
 * const server = await serve({ upgrader, name: "web", port: 8080, handler });
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
   * WebSockets closed) once it is final.
   */
  readonly finished: Promise<void>;
  /**
   * Stops accepting on this process's copy of the listener, answers with
   * `Connection: close` for the grace period (`drainGracePeriod`), lets
   * requests in flight finish and closes idle connections; resolves with
   * {@linkcode HandedOverServer.finished}. The disposers and `signal` call it.
   */
  stop(): Promise<void>;
}

/** Every key of {@linkcode CommonServeOptions}: the type says if one is missing. */
const COMMON_KEYS: Record<keyof CommonServeOptions, true> = {
  upgrader: true,
  name: true,
  hostname: true,
  port: true,
  path: true,
  signal: true,
  drainGracePeriod: true,
  drainDeadline: true,
  onListen: true,
};

/**
 * `options` without {@linkcode CommonServeOptions}: what an adapter passes
 * on to its runtime's server.
 *
 * @example
 * ```ts ignore
 * runtimeOptions({ upgrader, name: "web", port: 8080, handler }); // { handler }
 * ```
 */
export function runtimeOptions<T extends CommonServeOptions>(
  options: T,
): Omit<T, keyof CommonServeOptions> {
  return Object.fromEntries(
    Object.entries(options).filter(([key]) => !Object.hasOwn(COMMON_KEYS, key)),
  ) as Omit<T, keyof CommonServeOptions>;
}

/** A listener the upgrader's descriptor store owns. */
export interface StoreListener {
  /** The store's descriptor: never close it; duplicate it to keep a copy. */
  readonly fd: number;
  /** The socket's real address. */
  readonly address: SocketAddress;
}

/**
 * The address `options` describe, with the defaults: `path` for Unix, else
 * `hostname` (default all IPv4 interfaces) and `port` (default 8000).
 *
 * @example
 * ```ts ignore
 * listenAddressOf({ port: 8080 }); // { hostname: "0.0.0.0", port: 8080 }
 * ```
 */
export function listenAddressOf(
  options: Pick<CommonServeOptions, "hostname" | "port" | "path">,
): ListenAddress {
  if (options.path !== undefined) return { path: options.path };
  return {
    hostname: options.hostname ?? "0.0.0.0",
    port: options.port ?? DEFAULT_PORT,
  };
}

/**
 * What every adapter does once its server serves on `address`: tells
 * `onListen` (or logs the `scheme` URL), and makes `signal` stop the server.
 * Returns `server`.
 */
export function serving<T extends HandedOverServer>(
  server: T,
  address: SocketAddress,
  options: Pick<CommonServeOptions, "onListen" | "signal">,
  scheme: "http" | "https",
): T {
  (options.onListen ?? logListening(scheme))(address);
  const { signal } = options;
  if (!signal) return server;
  // A failure to stop is reported by `finished`.
  const stop = () => void server.stop().catch(() => {});
  if (signal.aborted) {
    stop();
    return server;
  }
  signal.addEventListener("abort", stop, { once: true });
  // The signal may outlive the server: it must not keep it.
  const forget = () => signal.removeEventListener("abort", stop);
  server.finished.then(forget, forget);
  return server;
}

function logListening(scheme: string): (address: SocketAddress) => void {
  return (address) => {
    if (address.family === "unix") {
      console.log(
        `Listening on ${address.path ?? `@${address.abstract ?? ""}`}`,
      );
      return;
    }
    const host = address.family === "inet6"
      ? `[${address.hostname}]`
      : address.hostname;
    console.log(`Listening on ${scheme}://${host}:${address.port}/`);
  };
}
