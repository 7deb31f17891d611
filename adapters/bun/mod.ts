/**
 * `Bun.serve` on a listener handed over by tableroll.
 *
 * {@linkcode serve} takes `Bun.serve`'s options (`fetch`, `routes`,
 * `websocket`, `error`, `tls`, `hostname`/`port` or `unix`…) plus the upgrader
 * and the listener's name. The listener is inherited from the previous
 * process (or opened), adopted into Bun's own server, and drained without
 * dropping a request once a successor takes over. `reload()` keeps that
 * behaviour for the new handlers. Static responses in `routes` are served by
 * Bun without JavaScript, so during a drain they do not carry the
 * `Connection: close` that handler responses get.
 *
 * @example Serve HTTP and drain when the next version takes over
 * ```ts ignore
 * import { Upgrader } from "tableroll";
 * import { serve } from "tableroll/bun";
 *
 * const upgrader = await Upgrader.create("/run/myapp");
 * const server = serve({
 *   upgrader,
 *   name: "web",
 *   hostname: "127.0.0.1",
 *   port: 8080,
 *   fetch: () => new Response("hello"),
 * });
 * await upgrader.ready();
 * await server.finished; // drained after a successor took over
 * await upgrader.stop();
 * ```
 *
 * @module
 */
// @ts-types="./deno_types.d.ts"
import type { Serve, Server, ServerWebSocket, WebSocketHandler } from "bun";
import { serveAdopted } from "../adopt.ts";
import { Drain } from "../drain.ts";
import { type HandoverOptions, listenAddressOf } from "../upgrader.ts";

export { AdoptionError } from "../adopt.ts";
export type * from "../types.ts";
// @ts-types="./deno_types.d.ts"
export type { Serve, Server, ServerWebSocket, WebSocketHandler } from "bun";

/** `Bun.serve`'s options with {@linkcode HandoverOptions}. */
export type ServeOptions<WebSocketData = undefined, R extends string = string> =
  & Serve.Options<WebSocketData, R>
  & HandoverOptions;

/** Bun's server, plus the end of its drain. */
export interface HandedOverServer<WebSocketData> extends Server<WebSocketData> {
  /**
   * Resolves when the server stopped: after `stop()`, or after the drain
   * that follows a successor's takeover (requests done, WebSockets closed).
   */
  readonly finished: Promise<void>;
}

/** The `Bun` global, named only when serving so that Deno can load this module. */
function bunRuntime(): {
  serve<WebSocketData, R extends string>(
    options: Serve.Options<WebSocketData, R>,
  ): Server<WebSocketData>;
} {
  return (globalThis as unknown as { Bun: ReturnType<typeof bunRuntime> }).Bun;
}

/** The options whose handlers the adapter wraps. */
interface HandlerOptions<WebSocketData> {
  fetch?: AnyHandler;
  routes?: Record<string, unknown>;
  websocket?: WebSocketHandler<WebSocketData>;
}

type AnyHandler = (
  this: unknown,
  request: Request,
  server: unknown,
) => unknown;

/**
 * Serves with `Bun.serve` on the upgrader's listener `options.name`. The
 * returned server's `port`, `hostname` and `url` are the listener's real
 * address.
 *
 * Throws {@linkcode AdoptionError} if this Bun's internals do not allow
 * adoption; serve through `tableroll/node` then.
 *
 * @example
 * ```ts ignore
 * const server = serve({ upgrader, name: "web", port: 8080, fetch: handler });
 * server.url.href; // "http://0.0.0.0:8080/"
 * ```
 */
export function serve<WebSocketData = undefined, R extends string = string>(
  options: ServeOptions<WebSocketData, R>,
): HandedOverServer<WebSocketData> {
  const { upgrader, name, drainGracePeriod, drainDeadline, ...bunOptions } =
    options as
      & ServeOptions<WebSocketData, R>
      & HandlerOptions<WebSocketData>
      & {
        unix?: string;
        hostname?: string;
        port?: number | string;
      };
  const listener = upgrader.fds.listen(
    name,
    listenAddressOf({ ...bunOptions, path: bunOptions.unix }, 3000),
  );
  const drain = new Drain({
    stopAccepting: () => adopted.stopAccepting(),
    async close() {
      const stopped = server.stop(false);
      server.closeIdleConnections();
      await stopped;
    },
    forceClose: () => void server.stop(true),
  }, { drainGracePeriod, drainDeadline });
  const mark = (response: unknown) =>
    response instanceof Response ? drain.mark(response) : response;
  // Handlers see the server with the real address, as `this` and argument.
  const wrap = (handler: AnyHandler): AnyHandler => (request) => {
    const response = handler.call(handedOver, request, handedOver);
    return response instanceof Promise ? response.then(mark) : mark(response);
  };
  const handlers = (options: HandlerOptions<WebSocketData>) => ({
    fetch: options.fetch && wrap(options.fetch),
    routes: options.routes && wrapRoutes(options.routes, wrap),
    websocket: options.websocket &&
      trackSockets(options.websocket, (ws) => drain.track(ws)),
  });
  const { server, listener: adopted } = serveAdopted(
    listener,
    (placeholder) =>
      bunRuntime().serve({
        ...bunOptions,
        hostname: undefined,
        port: undefined,
        unix: undefined,
        ...("path" in placeholder ? { unix: placeholder.path } : placeholder),
        ...handlers(bunOptions),
      } as Serve.Options<WebSocketData, R>),
    (server) => server.stop(true),
  );
  upgrader.upgradeComplete.then(() => drain.start(), () => {});

  const address = adopted.address;
  const hostname = address.family === "unix" ? undefined : address.hostname;
  const port = address.family === "unix" ? undefined : address.port;
  const scheme = bunOptions.tls ? "https" : "http";
  const url = address.family === "unix"
    ? new URL(`unix://${address.path}`)
    : new URL(
      `${scheme}://${
        address.family === "inet6" ? `[${hostname}]` : hostname
      }:${port}/`,
    );
  const overrides: Record<PropertyKey, unknown> = {
    hostname,
    port,
    url,
    finished: drain.finished,
    reload(options: Serve.Options<WebSocketData, R>) {
      const next = options as typeof options & HandlerOptions<WebSocketData>;
      server.reload({ ...next, ...handlers(next) } as typeof options);
      return handedOver;
    },
    stop(closeActiveConnections?: boolean) {
      adopted.stopAccepting();
      const stopped = server.stop(closeActiveConnections);
      drain.settle(stopped);
      return stopped;
    },
  };
  const handedOver = new Proxy(server, {
    get(target, property) {
      if (property in overrides) return overrides[property];
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  }) as HandedOverServer<WebSocketData>;
  return handedOver;
}

function wrapRoutes(
  routes: Record<string, unknown>,
  wrap: (handler: AnyHandler) => AnyHandler,
): Record<string, unknown> {
  // Static responses are served by Bun without JavaScript: they stay as they are.
  const wrapValue = (value: unknown) =>
    typeof value === "function" ? wrap(value as AnyHandler) : value;
  return Object.fromEntries(
    Object.entries(routes).map(([path, value]) => [
      path,
      isMethodTable(value)
        ? Object.fromEntries(
          Object.entries(value).map(([m, v]) => [m, wrapValue(v)]),
        )
        : wrapValue(value),
    ]),
  );
}

function isMethodTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null &&
    Object.getPrototypeOf(value) === Object.prototype && !("dir" in value);
}

function trackSockets<WebSocketData>(
  handler: WebSocketHandler<WebSocketData>,
  track: (ws: ServerWebSocket<WebSocketData>) => () => void,
): WebSocketHandler<WebSocketData> {
  const untrack = new WeakMap<ServerWebSocket<WebSocketData>, () => void>();
  return {
    ...handler,
    open(ws) {
      untrack.set(ws, track(ws));
      return handler.open?.(ws);
    },
    close(ws, code, reason) {
      untrack.get(ws)?.();
      return handler.close?.(ws, code, reason);
    },
  };
}
