/**
 * A `node:http` or `node:https` server on a listener handed over by
 * tableroll: the fallback when a runtime's native server cannot adopt a
 * socket, and the adapter for code written against Node's API.
 *
 * The listener is served by a `node:net` server listening on a duplicate of
 * the store's descriptor (`listen({ fd })`), which hands each connection to
 * the HTTP server. `http.Server.listen({ fd })` itself would be simpler but
 * Bun's `node:http` ignores `fd` and listens on a random port; `node:net`
 * honours it in Deno and Bun alike, and no runtime internals are involved.
 *
 * @example Serve and drain when the next version takes over
 * ```ts ignore
 * import { createServer } from "node:http";
 * import { Upgrader } from "tableroll";
 * import { serve } from "tableroll/node";
 *
 * const upgrader = await Upgrader.create("/run/myapp");
 * const served = await serve({
 *   upgrader,
 *   name: "web",
 *   address: { hostname: "127.0.0.1", port: 8080 },
 *   server: createServer((_req, res) => res.end("hello")),
 * });
 * await upgrader.ready();
 * await served.finished; // drained after a successor took over
 * await upgrader.stop();
 * ```
 *
 * @module
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import { close, dup, type SocketAddress } from "../../ffi/mod.ts";
import { Drain, type DrainOptions } from "../drain.ts";
import type { ListenAddress, ListenerSource } from "../upgrader.ts";

export type { DrainOptions } from "../drain.ts";
export type {
  ListenAddress,
  ListenerSource,
  StoreListener,
} from "../upgrader.ts";
export type { InetAddress, SocketAddress, UnixAddress } from "../../ffi/mod.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions extends DrainOptions {
  /** The upgrader whose descriptor store holds the listener. */
  upgrader: ListenerSource;
  /** The listener's name, the same in every version of the service. */
  name: string;
  /** Where to listen if no predecessor handed the listener over. */
  address: ListenAddress;
  /** The `node:http` or `node:https` server; it must not listen itself. */
  server: Server;
}

/** A server serving on a handed-over listener. */
export interface ServedListener {
  /** The listener's real address. */
  readonly address: SocketAddress;
  /**
   * Resolves when the server stopped: after {@linkcode ServedListener.close},
   * or after the drain that follows a successor's takeover.
   */
  readonly finished: Promise<void>;
  /** Stops accepting, lets requests in flight finish, closes idle connections. */
  close(): Promise<void>;
}

/**
 * Serves `options.server` on the upgrader's listener `options.name`.
 *
 * @example
 * ```ts ignore
 * const { address } = await serve({ upgrader, name: "web", address: { path: "/run/web.sock" }, server });
 * ```
 */
export async function serve(options: ServeOptions): Promise<ServedListener> {
  const { upgrader, name, server } = options;
  const listener = upgrader.fds.listen(name, options.address);
  const connections = new ConnectionTracker(server);
  const acceptor = createNetServer((socket) => {
    connections.add(socket);
    server.emit("connection", socket);
  });
  const drain = new Drain({
    stopAccepting: () => acceptor.close(),
    close: () => connections.closeWhenIdle(),
    forceClose: () => connections.destroyAll(),
  }, options);
  server.prependListener("request", (_req, res: ServerResponse) => {
    if (drain.draining) res.setHeader("connection", "close");
  });

  // The net server owns and closes its descriptor: give it a copy.
  const fd = dup(listener.fd);
  try {
    await new Promise<void>((resolve, reject) => {
      acceptor.once("error", reject);
      acceptor.listen({ fd }, () => {
        acceptor.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    close(fd);
    throw err;
  }
  upgrader.upgradeComplete.then(() => drain.start(), () => {});
  return {
    address: listener.address,
    finished: drain.finished,
    close() {
      acceptor.close();
      const closed = connections.closeWhenIdle();
      drain.settle(closed);
      return closed;
    },
  };
}

/** The HTTP server's connections and how many requests each has in flight. */
class ConnectionTracker {
  #inFlight = new Map<Socket, number>();
  #closing = false;
  #allClosed?: () => void;

  constructor(server: Server) {
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      this.#inFlight.set(socket, (this.#inFlight.get(socket) ?? 0) + 1);
      res.once("close", () => {
        const left = (this.#inFlight.get(socket) ?? 1) - 1;
        if (!this.#inFlight.has(socket)) return;
        this.#inFlight.set(socket, left);
        if (left === 0 && this.#closing) socket.end();
      });
    });
    // An upgraded connection (WebSocket) stays until the drain deadline.
    server.on("upgrade", (req: IncomingMessage) => {
      this.#inFlight.set(req.socket, 1);
    });
  }

  add(socket: Socket): void {
    this.#inFlight.set(socket, 0);
    socket.once("close", () => {
      this.#inFlight.delete(socket);
      if (this.#inFlight.size === 0) this.#allClosed?.();
    });
  }

  /** Ends idle connections now and busy ones after their response. */
  closeWhenIdle(): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#allClosed = resolve);
    for (const [socket, inFlight] of this.#inFlight) {
      if (inFlight === 0) socket.end();
    }
    if (this.#inFlight.size === 0) this.#allClosed!();
    return closed;
  }

  destroyAll(): void {
    for (const socket of this.#inFlight.keys()) socket.destroy();
  }
}
