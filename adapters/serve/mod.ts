/**
 * One `serve` for Deno and Bun: it picks the running runtime's adapter
 * (`@tableroll/tableroll/deno` or `@tableroll/tableroll/bun`), so a program
 * that uses it runs unchanged on both. It takes the options every adapter
 * takes ({@linkcode CommonServeOptions}: the same names and defaults on every
 * runtime, port 8000 included) and a `fetch`-style handler; the server it
 * resolves with is the runtime's own, seen through the handle every adapter
 * gives ({@linkcode HandedOverServer}). Import the runtime's own adapter for
 * the rest of its server (TLS, WebSockets, routes…).
 *
 * @example A program for `deno run -A` and `bun`
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/serve";
 *
 * const upgrader = await Upgrader.create("/run/my-service");
 * const server = await serve({
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
import type { CommonServeOptions, HandedOverServer } from "../contract.ts";

export type { CommonServeOptions, HandedOverServer };

/** The options of {@linkcode serve}: those of every adapter, and the handler. */
export interface ServeOptions extends CommonServeOptions {
  /** Answers a request. */
  handler(request: Request): Response | Promise<Response>;
}

/**
 * Serves `options.handler` on the upgrader's listener `options.name` with
 * the running runtime's native server; resolves once it serves.
 *
 * Rejects with a `TablerollError` with code `adoption` if the runtime's
 * internals do not allow adoption; serve through `@tableroll/tableroll/node`
 * then.
 *
 * @example
 * ```ts ignore
 * const server = await serve({ upgrader, name: "web", port: 0, handler });
 * console.log(server.address); // { family: "inet", hostname: "0.0.0.0", port: 41234 }
 * ```
 */
export async function serve(options: ServeOptions): Promise<HandedOverServer> {
  const { handler, ...common } = options;
  // Only the running runtime's adapter is loaded, and only when it serves.
  if ("Bun" in globalThis) {
    const { serve } = await import("../bun/mod.ts");
    return serve({ ...common, fetch: (request: Request) => handler(request) });
  }
  const { serve } = await import("../deno/mod.ts");
  return serve({ ...common, handler: (request) => handler(request) });
}
