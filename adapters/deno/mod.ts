/**
 * `Deno.serve` on a listener handed over by tableroll.
 *
 * {@linkcode serve} takes `Deno.serve`'s options plus the upgrader and the
 * listener's name. The listener is inherited from the previous process (or
 * opened), adopted into Deno's own server, and drained without dropping a
 * request once a successor takes over. Needs `--allow-ffi` and `--allow-net`
 * (plus read/write for a Unix socket path). Deno's shutdown also closes
 * WebSockets, so while any is open (tracked with {@linkcode upgradeWebSocket})
 * the drain waits for it, until the deadline, before closing idle
 * connections. A `signal` stops the server like
 * {@linkcode HandedOverDenoServer.stop}.
 *
 * @example Serve HTTP and drain when the next version takes over
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/deno";
 *
 * const upgrader = await Upgrader.create("/run/myapp");
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
import { closingConnection, Drain } from "../drain.ts";
import { type Generation, ServerGenerations } from "./generations.ts";
import {
  type HandedOverServer,
  type HandoverOptions,
  listenAddressOf,
} from "../contract.ts";

export type * from "../contract.ts";

/**
 * `Deno.serve`'s options, TCP (optionally TLS with `cert`/`key`) or Unix
 * (`path`), with the handler and {@linkcode HandoverOptions}.
 */
export type ServeOptions =
  & (
    | (
      & Omit<Deno.ServeTcpOptions, "reusePort">
      & Partial<Deno.TlsCertifiedKeyPem>
    )
    | Deno.ServeUnixOptions
  )
  & { handler: Deno.ServeHandler }
  & HandoverOptions;

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
 * `options.name`. Returns Deno's server, whose `addr` is the listener's real
 * address and whose `finished` resolves once the server stopped: after
 * `shutdown()` (or `stop()`), or after the drain that follows a successor's
 * takeover.
 *
 * Deno's server stops accepting for good at the first error of `accept(2)`
 * (`EMFILE` when the process is out of descriptors); the adapter then serves
 * the listener with a new `Deno.serve` as soon as it can, and the old one
 * keeps its connections (`accept-failed` and `accept-resumed` events).
 *
 * Throws a `TablerollError` with code `adoption` if this Deno's internals do not allow
 * adoption; serve through `@tableroll/tableroll/node` then.
 *
 * @example
 * ```ts ignore
 * const server = serve({ upgrader, name: "web", port: 8080, handler });
 * console.log(server.addr); // { transport: "tcp", hostname: "0.0.0.0", port: 8080 }
 * ```
 */
export function serve(options: ServeOptions): HandedOverDenoServer {
  const {
    upgrader,
    name,
    handler,
    onListen,
    signal,
    drainGracePeriod,
    drainDeadline,
    ...denoOptions
  } = options;
  const listener = upgrader.fds.listen(
    name,
    listenAddressOf(options as { port?: number; path?: string }, 8000),
  );
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
    { drainGracePeriod, drainDeadline },
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

  const addr = denoAddr(servers.address);
  (onListen ?? logListening("cert" in denoOptions ? "https" : "http"))(
    addr as Deno.NetAddr & Deno.UnixAddr,
  );
  const stop = () => drain.stop(() => servers.shutdown());
  signal?.addEventListener("abort", () => stop(), { once: true });
  return {
    addr,
    address: servers.address,
    finished: drain.finished,
    ref: () => servers.ref(),
    unref: () => servers.unref(),
    shutdown: stop,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * `Deno.upgradeWebSocket`, plus tracking by the drain: the socket is closed
 * with 1001 (going away) at the drain deadline, and the drain waits for it.
 * Call it before the handler's first `await`, or run one server per process:
 * otherwise the socket cannot be matched to its server and is not tracked.
 *
 * @example
 * ```ts ignore
 * serve({ upgrader, name: "ws", port: 8080, handler(request) {
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

function logListening(scheme: string) {
  return (addr: Deno.NetAddr | Deno.UnixAddr) =>
    console.log(
      "path" in addr
        ? `Listening on ${addr.path}`
        : `Listening on ${scheme}://${addr.hostname}:${addr.port}/`,
    );
}
