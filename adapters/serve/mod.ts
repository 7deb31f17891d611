/**
 * One `serve` for Deno and Bun: it picks the running runtime's adapter
 * (`@tableroll/tableroll/deno` or `@tableroll/tableroll/bun`), so a program
 * that uses it runs unchanged on both. The options are what both servers
 * share: where to listen, a `fetch`-style handler, the drain's timing.
 * Import the runtime's own adapter for the rest of its server (TLS,
 * WebSockets, routes…).
 *
 * @example A program for `deno run -A` and `bun`
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/serve";
 *
 * const upgrader = await Upgrader.create("/run/my-service");
 * const server = serve({
 *   upgrader,
 *   name: "web",
 *   hostname: "127.0.0.1",
 *   port: 8080,
 *   handler: () => new Response("hello"),
 * });
 * await upgrader.ready();
 * await server.finished; // drained after a successor took over
 * await upgrader.stop();
 * ```
 *
 * @module
 */
import type { SocketAddress } from "../../ffi/mod.ts";
import type { HandedOverServer, HandoverOptions } from "../contract.ts";

export type * from "../contract.ts";

// Only the running runtime's adapter is loaded.
const serveBun = "Bun" in globalThis
  ? (await import("../bun/mod.ts")).serve
  : undefined;
const serveDeno = serveBun ? undefined : (await import("../deno/mod.ts")).serve;

/** Options of {@linkcode serve}: TCP (`hostname`, `port`) or Unix (`path`). */
export interface ServeOptions extends HandoverOptions {
  /** Answers a request. */
  handler(request: Request): Response | Promise<Response>;
  /** The address to listen on; default all interfaces. */
  hostname?: string;
  /** The port; default the runtime's (Deno 8000, Bun `$PORT` or 3000). */
  port?: number;
  /** A Unix socket path, instead of `hostname` and `port`. */
  path?: string;
  /** Called once the server listens, with its real address; default: log it. */
  onListen?(address: SocketAddress): void;
}

/**
 * Serves `options.handler` on the upgrader's listener `options.name` with
 * the running runtime's native server.
 *
 * Throws a `TablerollError` with code `adoption` if the runtime's internals do not allow
 * adoption; serve through `@tableroll/tableroll/node` then.
 *
 * @example
 * ```ts ignore
 * const server = serve({ upgrader, name: "web", port: 0, handler });
 * console.log(server.address); // { family: "inet", hostname: "0.0.0.0", port: 41234 }
 * ```
 */
export function serve(options: ServeOptions): HandedOverServer {
  const { handler, hostname, port, path, onListen, ...handover } = options;
  const listening = (server: HandedOverServer) => {
    (onListen ?? logListening)(server.address);
    return server;
  };
  if (serveBun) {
    const fetch = (request: Request) => handler(request);
    return listening(
      path === undefined
        ? serveBun({ ...handover, hostname, port, fetch })
        : serveBun({ ...handover, unix: path, fetch }),
    );
  }
  const onDenoListen = () => {};
  return listening(
    path === undefined
      ? serveDeno!({
        ...handover,
        hostname,
        port,
        handler,
        onListen: onDenoListen,
      })
      : serveDeno!({ ...handover, path, handler, onListen: onDenoListen }),
  );
}

function logListening(address: SocketAddress): void {
  console.log(
    address.family === "unix"
      ? `Listening on ${address.path ?? `@${address.abstract}`}`
      : `Listening on http://${
        address.family === "inet6" ? `[${address.hostname}]` : address.hostname
      }:${address.port}/`,
  );
}
