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
 * {@linkcode HandedOverDenoServer.stop}, except when its reason is the
 * takeover (`upgrader.signal`): then the drain runs as it would without it.
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
import { UpgradeCompletedError } from "../../src/errors.ts";
import { serveAdopted } from "../adopt.ts";
import { Drain } from "../drain.ts";
import {
  type HandedOverServer,
  type HandoverOptions,
  listenAddressOf,
} from "../contract.ts";

export { AdoptionError } from "../adopt.ts";
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

// The drain of the handler running right now, for upgradeWebSocket, and the
// drains of live servers for calls after the handler's first await.
let calling: Drain | undefined;
const live = new Set<Drain>();

/**
 * Serves `options.handler` with `Deno.serve` on the upgrader's listener
 * `options.name`. Returns Deno's server, whose `addr` is the listener's real
 * address and whose `finished` resolves once the server stopped: after
 * `shutdown()` (or `stop()`), or after the drain that follows a successor's
 * takeover.
 *
 * Throws {@linkcode AdoptionError} if this Deno's internals do not allow
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
      stopAccepting: () => adopted.stopAccepting(),
      resumeAccepting: (): void => adopted.resumeAccepting(),
      // Deno's shutdown also closes upgraded connections: WebSockets first.
      close: (): Promise<void> =>
        drain.socketsClosed().then(() => server.shutdown()),
      // Deno.serve cannot cut requests in flight; WebSockets are closed.
      forceClose: () => {},
      // Deno.serve does not count its connections: the events say null.
    },
    { drainGracePeriod, drainDeadline },
    { upgrader, name },
  );
  const mark = (response: Response) => drain.mark(response);
  const handle: Deno.ServeHandler = (request, info) => {
    let response;
    calling = drain;
    try {
      response = handler(request, info);
    } finally {
      calling = undefined;
    }
    // No extra promise for synchronous handlers: it costs throughput.
    return response instanceof Promise ? response.then(mark) : mark(response);
  };
  const { server, listener: adopted } = serveAdopted(
    listener,
    (placeholder) =>
      Deno.serve(
        {
          ...denoOptions,
          ...placeholder,
          handler: handle,
          onListen: () => {},
        } as Deno.ServeTcpOptions & Deno.ServeInit<Deno.NetAddr>,
      ),
    (server) => server.shutdown(),
    upgrader,
  );
  live.add(drain);
  drain.settle(server.finished);
  const forget = () => live.delete(drain);
  drain.finished.then(forget, forget);
  drain.follow(upgrader);

  const addr = denoAddr(adopted.address);
  (onListen ?? logListening("cert" in denoOptions ? "https" : "http"))(
    addr as Deno.NetAddr & Deno.UnixAddr,
  );
  const stop = () => {
    adopted.stopAccepting();
    const closed = server.shutdown();
    drain.stopped(closed);
    return closed;
  };
  signal?.addEventListener("abort", () => {
    // At the takeover the drain stops the server after its grace period.
    if (!(signal.reason instanceof UpgradeCompletedError)) stop();
  }, { once: true });
  return {
    addr,
    address: adopted.address,
    finished: drain.finished,
    ref: () => server.ref(),
    unref: () => server.unref(),
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
  const drain = calling ?? (live.size === 1 ? [...live][0] : undefined);
  if (drain) {
    upgrade.socket.addEventListener("close", drain.track(upgrade.socket));
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
