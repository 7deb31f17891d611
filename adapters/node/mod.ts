/**
 * A `node:http` or `node:https` server on a listener handed over by
 * tableroll: the fallback when a runtime's native server cannot adopt a
 * socket, and the adapter for code written against Node's API.
 *
 * The server listens on a duplicate of the store's descriptor with
 * `listen({ fd })`; no runtime internals are involved. Bun's `node:http`
 * ignores `fd` (it listens on a random port), so there a `node:net` server
 * listens on it and hands each connection to the HTTP server. (Deno's
 * `node:http` closes keep-alive connections handed to it that way, hence not
 * the same path for both.) On Bun, `node:https` servers are refused: Bun's
 * `node:https` does not encrypt connections handed to it (use `@tableroll/tableroll/bun`
 * with `tls`).
 *
 * @example Serve and drain when the next version takes over
 * ```ts ignore
 * import { createServer } from "node:http";
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/node";
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
import { Server as HttpsServer } from "node:https";
import {
  createServer as createNetServer,
  Server as NetServer,
  type Socket,
} from "node:net";
import type { Duplex } from "node:stream";
import { close, dup } from "../../ffi/mod.ts";
import { Drain } from "../drain.ts";
import type {
  HandedOverServer,
  HandoverOptions,
  ListenAddress,
} from "../contract.ts";

export type * from "../contract.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions extends HandoverOptions {
  /** Where to listen if no predecessor handed the listener over. */
  address: ListenAddress;
  /** The `node:http` or `node:https` server; it must not listen itself. */
  server: Server;
}

/**
 * Serves `options.server` on the upgrader's listener `options.name`.
 *
 * @example
 * ```ts ignore
 * const { address } = await serve({ upgrader, name: "web", address: { path: "/run/web.sock" }, server });
 * ```
 */
export async function serve(options: ServeOptions): Promise<HandedOverServer> {
  const { upgrader, name, server } = options;
  if ("Bun" in globalThis && server instanceof HttpsServer) {
    // Bun's node:https does not encrypt connections it did not accept.
    throw new TypeError(
      "@tableroll/tableroll/node cannot serve a node:https server on Bun: " +
        "use @tableroll/tableroll/bun with its tls option",
    );
  }
  const listener = upgrader.fds.listen(name, options.address);
  const connections = new ConnectionTracker(server);
  let acceptor = await listenOnCopy(server, listener.fd);
  const drain = new Drain(
    {
      stopAccepting: () => acceptor.close(),
      resumeAccepting: async () => {
        acceptor = await listenOnCopy(server, listener.fd);
      },
      close: () => connections.closeWhenIdle(),
      forceClose: () => connections.destroyAll(),
      openConnections: () => connections.open,
    },
    options,
    { upgrader, name },
  );
  server.prependListener("request", (_req, res: ServerResponse) => {
    if (drain.draining) res.setHeader("connection", "close");
  });
  drain.follow(upgrader);
  const stop = () => drain.stop(() => connections.closeWhenIdle());
  return {
    address: listener.address,
    finished: drain.finished,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Makes `server` accept on a copy of the store's descriptor `fd` (the server
 * owns and closes the descriptor it listens on); returns what stops
 * accepting.
 */
async function listenOnCopy(
  server: Server,
  fd: number,
): Promise<{ close(): unknown }> {
  const copy = dup(fd);
  try {
    return await listenOnDescriptor(server, copy);
  } catch (err) {
    close(copy);
    throw err;
  }
}

/** Makes `server` accept on `fd`; returns what stops accepting. */
async function listenOnDescriptor(
  server: Server,
  fd: number,
): Promise<{ close(): unknown }> {
  const acceptor = "Bun" in globalThis
    ? createNetServer((socket) => server.emit("connection", socket))
    : server;
  await new Promise<void>((resolve, reject) => {
    acceptor.once("error", reject);
    acceptor.listen({ fd }, () => {
      acceptor.off("error", reject);
      resolve();
    });
  });
  // net.Server's close stops listening; http.Server's would also close the
  // idle keep-alive connections, before the grace period.
  return { close: () => NetServer.prototype.close.call(acceptor) };
}

/**
 * The server's connections: every accepted one until it closes, and the
 * requests in flight on each connection HTTP reads from (for an HTTPS server
 * that is the TLS socket wrapping the accepted one).
 */
class ConnectionTracker {
  #accepted = new Set<Socket>();

  /** Connections accepted and not closed yet. */
  get open(): number {
    return this.#accepted.size;
  }

  #inFlight = new Map<Duplex, number>();
  #closing = false;
  #allClosed?: PromiseWithResolvers<void>;

  constructor(server: Server) {
    server.on("connection", (socket: Socket) => this.#add(socket));
    const httpLevel = server instanceof HttpsServer
      ? "secureConnection"
      : "connection";
    server.on(httpLevel, (socket: Duplex) => {
      this.#inFlight.set(socket, 0);
      socket.once("close", () => this.#inFlight.delete(socket));
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      const socket = req.socket;
      this.#inFlight.set(socket, (this.#inFlight.get(socket) ?? 0) + 1);
      res.once("close", () => {
        const left = this.#inFlight.get(socket);
        if (left === undefined) return;
        this.#inFlight.set(socket, left - 1);
        if (left === 1 && this.#closing) socket.end();
      });
    });
    // An upgraded connection (WebSocket) stays until the drain deadline.
    server.on("upgrade", (req: IncomingMessage) => {
      this.#inFlight.set(req.socket, 1);
    });
  }

  #add(socket: Socket): void {
    this.#accepted.add(socket);
    socket.once("close", () => {
      this.#accepted.delete(socket);
      if (this.#accepted.size === 0) this.#allClosed?.resolve();
    });
  }

  /** Ends idle connections now and busy ones after their response. */
  closeWhenIdle(): Promise<void> {
    this.#closing = true;
    for (const [socket, inFlight] of this.#inFlight) {
      if (inFlight === 0) socket.end();
    }
    if (this.#accepted.size === 0) return Promise.resolve();
    this.#allClosed ??= Promise.withResolvers();
    return this.#allClosed.promise;
  }

  destroyAll(): void {
    for (const socket of this.#accepted) socket.destroy();
  }
}
