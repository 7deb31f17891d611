/**
 * `Bun.serve` on a listener handed over by tableroll.
 *
 * {@linkcode serve} takes the options every adapter takes (the upgrader, the
 * listener's name, `hostname`/`port` or `path`, `signal`, the drain's timing,
 * `onListen`) plus `Bun.serve`'s own but the address (`fetch`, `routes`,
 * `websocket`, `error`, `tls`…). The listener is inherited from the
 * previous process (or opened), adopted into Bun's own server, and drained
 * without dropping a request once a successor takes over. `reload()` keeps
 * that behaviour for the new handlers. Static responses in `routes` are
 * served by Bun without JavaScript, so during a drain they do not carry the
 * `Connection: close` that handler responses get.
 *
 * @example Serve HTTP and drain when the next version takes over
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/bun";
 *
 * const upgrader = await Upgrader.create("/run/myapp");
 * const server = await serve({
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
import type { SocketAddress } from "../../ffi/socket.ts";
import { delay } from "../../ffi/wait.ts";
import { type AdoptedListener, serveAdopted } from "../adopt.ts";
import { Drain } from "../drain.ts";
import {
  type CommonServeOptions,
  type HandedOverServer,
  listenAddressOf,
  runtimeOptions,
  serving,
} from "../contract.ts";

// Bun's own types that the options and the server below are made of, so
// that their documentation can show them.
// @ts-types="./deno_types.d.ts"
export type { Serve, Server, ServerWebSocket, WebSocketHandler } from "bun";

/**
 * The options of {@linkcode serve}: those of every adapter, and
 * `Bun.serve`'s but the address (`hostname`, `port`, `unix`, `reusePort`,
 * `ipv6Only`), which the common `hostname`, `port` and `path` replace.
 */
export type ServeOptions<WebSocketData = undefined, R extends string = string> =
  & CommonServeOptions
  & (Serve.Options<WebSocketData, R> extends infer Options
    ? Options extends unknown ? {
        [
          K in keyof Options as Exclude<
            K,
            "hostname" | "port" | "unix" | "reusePort" | "ipv6Only"
          >
        ]: Options[K];
      }
    : never
    : never);

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
 * Bun's server on a handed-over listener, with the tableroll handle. Every
 * member of Bun's `Server` is there and acts on Bun's server, except the
 * address (`port`, `hostname`, `url`, `address`: the listener's real one),
 * `stop()` and the disposers, which also stop accepting on this process's
 * copy of the listener and settle {@linkcode HandedOverBunServer.finished},
 * and `reload()`, which keeps the drain's handling for the new handlers.
 * Handlers get this object as `server`. Made by {@linkcode serve}.
 */
export class HandedOverBunServer<WebSocketData = undefined>
  implements Server<WebSocketData>, HandedOverServer {
  /** The listener's real address. */
  readonly address: SocketAddress;
  /** The port the listener is bound to; `undefined` on a Unix socket. */
  readonly port: number | undefined;
  /** The host the listener is bound to; `undefined` on a Unix socket. */
  readonly hostname: string | undefined;
  /** The listener's URL. */
  readonly url: URL;
  /**
   * Resolves when the server stopped: after `stop()`, or after the drain
   * that follows a successor's takeover (requests done, WebSockets closed).
   */
  readonly finished: Promise<void>;
  /** Bun's `upgrade`: makes `request` a WebSocket; `false` if it is not an upgrade. */
  readonly upgrade: Server<WebSocketData>["upgrade"];
  /** Bun's `publish`: sends to every WebSocket subscribed to a topic. */
  readonly publish: Server<WebSocketData>["publish"];
  readonly #server: Server<WebSocketData>;
  readonly #drain: Drain;
  readonly #handlers: (
    options: HandlerOptions<WebSocketData>,
  ) => HandlerOptions<WebSocketData>;

  /** Wraps `server`, which serves on `adopted`; use {@linkcode serve}. */
  constructor(
    server: Server<WebSocketData>,
    adopted: AdoptedListener,
    drain: Drain,
    handlers: (
      options: HandlerOptions<WebSocketData>,
    ) => HandlerOptions<WebSocketData>,
    tls: boolean,
  ) {
    this.#server = server;
    this.#drain = drain;
    this.#handlers = handlers;
    this.finished = drain.finished;
    this.upgrade = server.upgrade.bind(server);
    this.publish = server.publish.bind(server);
    const address = this.address = adopted.address;
    if (address.family === "unix") {
      this.url = new URL(`unix://${address.path}`);
      return;
    }
    this.hostname = address.hostname;
    this.port = address.port;
    const host = address.family === "inet6"
      ? `[${address.hostname}]`
      : address.hostname;
    this.url = new URL(`${tls ? "https" : "http"}://${host}:${address.port}/`);
  }

  /**
   * Stops accepting on this process's copy of the listener and, after the
   * drain's grace period (responses carry `Connection: close`), stops Bun's
   * server; `closeActiveConnections` stops it at once, cutting requests in
   * flight and WebSockets. Resolves when every connection is closed.
   */
  stop(closeActiveConnections?: boolean): Promise<void> {
    return this.#drain.stop(
      () =>
        closeActiveConnections
          ? this.#server.stop(true)
          : closeGently(this.#server, this.#drain),
      closeActiveConnections,
    );
  }

  /** Calls {@linkcode HandedOverBunServer.stop} with `true`, as Bun's own does. */
  [Symbol.dispose](): void {
    void this.stop(true);
  }

  /** Calls {@linkcode HandedOverBunServer.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  /** Replaces the handlers; responses keep `Connection: close` while draining. */
  reload<R extends string>(
    options: Serve.Options<WebSocketData, R>,
  ): Server<WebSocketData> {
    const next = options as typeof options & HandlerOptions<WebSocketData>;
    this.#server.reload({ ...next, ...this.#handlers(next) } as typeof options);
    return this;
  }

  /** Bun's `closeIdleConnections`. */
  closeIdleConnections(): number {
    return this.#server.closeIdleConnections();
  }

  /** Bun's `fetch`: a request to the server's handlers, without a socket. */
  fetch(request: Request | string): Response | Promise<Response> {
    return this.#server.fetch(request);
  }

  /** Bun's `subscriberCount`. */
  subscriberCount(topic: string): number {
    return this.#server.subscriberCount(topic);
  }

  /** Bun's `requestIP`: the client's address. */
  requestIP(
    request: Request,
  ): ReturnType<Server<WebSocketData>["requestIP"]> {
    return this.#server.requestIP(request);
  }

  /** Bun's `timeout`: the idle timeout of `request`'s connection. */
  timeout(request: Request, seconds: number): void {
    this.#server.timeout(request, seconds);
  }

  /** Bun's `ref`: the server keeps the process alive. */
  ref(): void {
    this.#server.ref();
  }

  /** Bun's `unref`: the server does not keep the process alive. */
  unref(): void {
    this.#server.unref();
  }

  /** Requests in flight. */
  get pendingRequests(): number {
    return this.#server.pendingRequests;
  }

  /** Open WebSockets. */
  get pendingWebSockets(): number {
    return this.#server.pendingWebSockets;
  }

  /** `"http"`, `"https"`, or `null` on a Unix socket. */
  get protocol(): Server<WebSocketData>["protocol"] {
    return this.#server.protocol;
  }

  /** Whether Bun serves in development mode. */
  get development(): boolean {
    return this.#server.development;
  }

  /** The server's id. */
  get id(): string {
    return this.#server.id;
  }
}

/**
 * Serves with `Bun.serve` on the upgrader's listener `options.name`.
 * Resolves, once it serves, with Bun's server, whose `port`, `hostname`,
 * `url` and `address` are the listener's real address.
 *
 * Rejects with a `TablerollError` with code `adoption` if this Bun's
 * internals do not allow adoption; serve through `@tableroll/tableroll/node`
 * then.
 *
 * @example
 * ```ts ignore
 * const server = await serve({ upgrader, name: "web", port: 8080, fetch: handler });
 * server.url.href; // "http://0.0.0.0:8080/"
 * ```
 */
// async with nothing to await: every failure is a rejection, as on every adapter.
// deno-lint-ignore require-await
export async function serve<
  WebSocketData = undefined,
  R extends string = string,
>(
  options: ServeOptions<WebSocketData, R>,
): Promise<HandedOverBunServer<WebSocketData>> {
  const { upgrader, name } = options;
  const bunOptions = runtimeOptions(options) as
    & Serve.Options<WebSocketData, R>
    & HandlerOptions<WebSocketData>;
  const listener = upgrader.fds.listen(name, listenAddressOf(options));
  const drain = new Drain(
    {
      stopAccepting: () => adopted.stopAccepting(),
      resumeAccepting: (): void => adopted.resumeAccepting(),
      close: (): Promise<void> => closeGently(server, drain),
      forceClose: () => void server.stop(true),
      openConnections: (): number =>
        server.pendingRequests + server.pendingWebSockets,
    },
    options,
    { upgrader, name },
  );
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
        ...("path" in placeholder ? { unix: placeholder.path } : placeholder),
        ...handlers(bunOptions),
      } as Serve.Options<WebSocketData, R>),
    (server) => server.stop(true),
    upgrader,
  );
  drain.follow(upgrader);
  const handedOver = new HandedOverBunServer(
    server,
    adopted,
    drain,
    handlers,
    Boolean(bunOptions.tls),
  );
  return serving(
    handedOver,
    adopted.address,
    options,
    bunOptions.tls ? "https" : "http",
  );
}

/**
 * Closes `server` as a drain does: its listener and its idle keep-alive
 * connections, without cutting a request in flight or a WebSocket (the
 * drain's deadline cuts those); resolves once no request is in flight and
 * the WebSockets `drain` tracks are closed. Before Bun 1.4, `stop(false)`
 * leaves idle connections open and a response with `Connection: close` does
 * not close its connection: only the client or Bun's idle timeout would.
 */
async function closeGently<WebSocketData>(
  server: Server<WebSocketData>,
  drain: Drain,
): Promise<void> {
  // Before Bun 1.4 stop() never settles if a WebSocket was open when it was
  // called, even once every socket closed: the drain's own count of
  // WebSockets says when they are.
  const quiet = drain.socketsClosed().then(() => requestsDone(server));
  if (typeof server.closeIdleConnections !== "function") {
    // Bun before 1.2.22 has no closeIdleConnections, and its stop(true)
    // closes nothing once stop(false) was called. Once no request is in
    // flight and no WebSocket is open, every connection left is idle:
    // stop(true) closes them with the listener.
    await quiet;
    await server.stop(true);
    return;
  }
  const stopped = server.stop(false);
  // Only once no request is in flight: from Bun 1.2.22 to 1.2.23 it also
  // cuts responses still streaming.
  void requestsDone(server).then(() => server.closeIdleConnections());
  await Promise.race([stopped, quiet]);
}

/** Resolves once `server` has no request in flight. */
async function requestsDone(server: { pendingRequests: number }) {
  while (server.pendingRequests > 0) await delay(REQUESTS_POLL_MS);
}

const REQUESTS_POLL_MS = 10;

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
