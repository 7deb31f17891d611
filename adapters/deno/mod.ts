/**
 * `Deno.serve` on a listener handed over by tableroll.
 *
 * {@linkcode serve} takes the options every adapter takes (the upgrader, the
 * listener's name, `hostname`/`port` or `path`, `signal`, the drain's timing,
 * `onListen`) plus `Deno.serve`'s handler, TLS and error options. The
 * listener is inherited from the previous process (or opened), adopted into
 * Deno's own server, and drained without dropping a request once a
 * successor takes over. Needs `--allow-ffi` and `--allow-net` (plus
 * read/write for a Unix socket path). Deno's shutdown also closes
 * WebSockets, so while any is open (tracked with {@linkcode upgradeWebSocket})
 * the drain waits for it, until the deadline, before closing idle
 * connections.
 *
 * @example Serve HTTP and drain when the next version takes over
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/deno";
 *
 * const upgrader = await Upgrader.create("/run/myapp");
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
import type { SocketAddress } from "../../ffi/socket.ts";
import { closingConnection, Drain } from "../drain.ts";
import { type Generation, ServerGenerations } from "./generations.ts";
import {
  type CommonServeOptions,
  type HandedOverServer,
  listenAddressOf,
  runtimeOptions,
  serving,
} from "../contract.ts";

/**
 * The options of {@linkcode serve}: those of every adapter, `Deno.serve`'s
 * handler, and its other options but the address (`onError`,
 * `automaticCompression`, `cert` and `key` for TLS).
 */
export interface ServeOptions
  extends
    CommonServeOptions,
    Omit<Deno.ServeOptions, "signal" | "onListen">,
    Partial<Deno.TlsCertifiedKeyPem> {
  /** Answers a request, as `Deno.serve`'s handler. */
  handler: Deno.ServeHandler;
}

/**
 * `Deno.serve`'s server with the tableroll handle: `addr` and `address` are
 * the listener's real address, `shutdown()` and `stop()` both stop it.
 */
export interface HandedOverDenoServer
  extends Deno.HttpServer<Deno.NetAddr | Deno.UnixAddr>, HandedOverServer {
  /**
   * Resolves when the server stopped: after `shutdown()` or `stop()`, or
   * after the drain that follows a successor's takeover.
   */
  readonly finished: Promise<void>;
}

// The server and drain of the handler running right now, for
// upgradeWebSocket, and the live adapters for calls after the handler's
// first await.
let calling: { generation: Generation; drain: Drain } | undefined;
const live = new Set<{ servers: ServerGenerations; drain: Drain }>();

/**
 * Serves `options.handler` with `Deno.serve` on the upgrader's listener
 * `options.name`. Resolves, once it serves, with Deno's server, whose `addr`
 * is the listener's real address and whose `finished` resolves once the
 * server stopped: after `stop()` (or `shutdown()`, or `signal`), or after
 * the drain that follows a successor's takeover.
 *
 * Deno's server stops accepting for good at the first error of `accept(2)`
 * (`EMFILE` when the process is out of descriptors); the adapter then serves
 * the listener with a new `Deno.serve` as soon as it can, and the old one
 * keeps its connections (`accept-failed` and `accept-resumed` events).
 *
 * Rejects with a `TablerollError` with code `adoption` if this Deno's
 * internals do not allow adoption; serve through `@tableroll/tableroll/node`
 * then.
 *
 * @example
 * ```ts ignore
 * const server = await serve({ upgrader, name: "web", port: 8080, handler });
 * console.log(server.addr); // { transport: "tcp", hostname: "0.0.0.0", port: 8080 }
 * ```
 */
// async with nothing to await: every failure is a rejection, as on every adapter.
// deno-lint-ignore require-await
export async function serve(
  options: ServeOptions,
): Promise<HandedOverDenoServer> {
  const { upgrader, name, handler } = options;
  const denoOptions = runtimeOptions(options);
  const listener = upgrader.fds.listen(name, listenAddressOf(options));
  const drain = new Drain(
    {
      stopAccepting: (): void => servers.stopAccepting(),
      resumeAccepting: (): void => servers.resumeAccepting(),
      // Deno's shutdown also closes upgraded connections: WebSockets first.
      close: (): Promise<void> =>
        drain.socketsClosed().then(() => servers.shutdown()),
      // Deno.serve cannot cut requests in flight; WebSockets are closed.
      forceClose: () => {},
      // Deno.serve does not count its connections: the events say null.
    },
    options,
    { upgrader, name },
  );
  const handlerFor = (generation: Generation): Deno.ServeHandler => {
    // An old server's clients move on to the one accepting now.
    const mark = (response: Response) =>
      generation.retired ? closingConnection(response) : drain.mark(response);
    const caller = { generation, drain };
    return (request, info) => {
      let response;
      calling = caller;
      try {
        response = handler(request, info);
      } finally {
        calling = undefined;
      }
      // No extra promise for synchronous handlers: it costs throughput.
      return response instanceof Promise ? response.then(mark) : mark(response);
    };
  };
  const servers = new ServerGenerations({
    listener,
    open: (placeholder, handler) =>
      Deno.serve(
        {
          ...denoOptions,
          ...placeholder,
          handler,
          onListen: () => {},
        } as Deno.ServeTcpOptions & Deno.ServeInit<Deno.NetAddr>,
      ),
    handlerFor,
    gracePeriod: drain.gracePeriod,
    reportTo: { upgrader, name },
  });
  const adapter = { servers, drain };
  live.add(adapter);
  drain.settle(servers.ended);
  const forget = () => live.delete(adapter);
  drain.finished.then(forget, forget);
  drain.follow(upgrader);

  const stop = () => drain.stop(() => servers.shutdown());
  return serving(
    {
      addr: denoAddr(servers.address),
      address: servers.address,
      finished: drain.finished,
      ref: () => servers.ref(),
      unref: () => servers.unref(),
      shutdown: stop,
      stop,
      [Symbol.asyncDispose]: stop,
    },
    servers.address,
    options,
    "cert" in denoOptions ? "https" : "http",
  );
}

/**
 * `Deno.upgradeWebSocket`, plus tracking by the drain: the socket is closed
 * with 1001 (going away) at the drain deadline, and the drain waits for it.
 * Call it before the handler's first `await`, or run one server per process:
 * otherwise the socket cannot be matched to its server and is not tracked.
 *
 * @example
 * ```ts ignore
 * await serve({ upgrader, name: "ws", port: 8080, handler(request) {
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.onmessage = (e) => socket.send(e.data);
 *   return response;
 * } });
 * ```
 */
export function upgradeWebSocket(
  request: Request,
  options?: Deno.UpgradeWebSocketOptions,
): Deno.WebSocketUpgrade {
  const upgrade = Deno.upgradeWebSocket(request, options);
  const { socket } = upgrade;
  if (calling) {
    // Its server waits for it before an early shutdown, the drain at the end.
    const { generation, drain } = calling;
    socket.addEventListener("close", generation.track(socket));
    socket.addEventListener("close", drain.track(socket));
  } else if (live.size === 1) {
    const [{ servers, drain }] = live;
    socket.addEventListener("close", servers.trackEverywhere(socket));
    socket.addEventListener("close", drain.track(socket));
  }
  return upgrade;
}

function denoAddr(address: SocketAddress): Deno.NetAddr | Deno.UnixAddr {
  if (address.family === "unix") {
    return { transport: "unix", path: address.path ?? "" };
  }
  return { transport: "tcp", hostname: address.hostname, port: address.port };
}
