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
 * Older runtimes cannot serve a socket given by descriptor (Deno before
 * 2.8, Bun before 1.4: an error, a server on another port, or one that never
 * sees a connection; and before Bun 1.4.4 an HTTPS server cannot be told
 * from an HTTP one). The first `serve` of a process tries it on a private
 * loopback listener and throws a {@linkcode TablerollError} naming the
 * runtime if that fails; serve through the native adapters there.
 *
 * {@linkcode serve} takes the options every adapter takes (the upgrader, the
 * listener's name, `hostname`/`port` or `path`, `signal`, the drain's timing,
 * `onListen`) and the server, and resolves with that server carrying the
 * tableroll handle: `address` (also callable as Node's `address()`),
 * `finished`, `stop()`.
 *
 * @example Serve and drain when the next version takes over
 * ```ts ignore
 * import { createServer } from "node:http";
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/node";
 *
 * const upgrader = await Upgrader.create("/run/myapp");
 * const server = await serve({
 *   upgrader,
 *   name: "web",
 *   hostname: "127.0.0.1",
 *   port: 8080,
 *   server: createServer((_req, res) => res.end("hello")),
 * });
 * await upgrader.ready();
 * await server.finished; // drained after a successor took over
 * await upgrader.stop();
 * ```
 *
 * @module
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  Server as HttpServer,
  type ServerResponse,
} from "node:http";
import { Server as HttpsServer } from "node:https";
import {
  type AddressInfo,
  connect,
  createServer as createNetServer,
  Server as NetServer,
  type Socket,
} from "node:net";
import type { Duplex } from "node:stream";
import { close, dup } from "../../ffi/fd.ts";
import {
  listenOn,
  localAddress,
  type SocketAddress,
} from "../../ffi/socket.ts";
import { delay } from "../../ffi/wait.ts";
import { TablerollError } from "../../src/errors.ts";
import {
  currentRuntime,
  NODE_ADAPTER_SINCE,
  runtimeName,
  versionName,
} from "../tested_runtimes.ts";
import { Drain } from "../drain.ts";
import {
  type CommonServeOptions,
  type HandedOverServer,
  listenAddressOf,
  serving,
} from "../contract.ts";

/** The options of {@linkcode serve}: those of every adapter, and the server. */
export interface ServeOptions<S extends Server = Server>
  extends CommonServeOptions {
  /** The `node:http` or `node:https` server; it must not listen itself. */
  server: S;
}

/**
 * Serves `options.server` on the upgrader's listener `options.name`.
 * Resolves, once it serves, with that same server carrying the tableroll
 * handle: `address` is the listener's real address and, still callable,
 * answers Node's `address()` (on Bun too, where the server itself does not
 * listen); `finished`, `stop()` and `[Symbol.asyncDispose]` are the
 * adapter's. Rejects where the runtime cannot serve a socket given by
 * descriptor, and for a `node:https` server on Bun.
 *
 * @example
 * ```ts ignore
 * const served = await serve({ upgrader, name: "web", path: "/run/web.sock", server });
 * served.address; // { family: "unix", path: "/run/web.sock" }
 * ```
 */
export async function serve<S extends Server>(
  options: ServeOptions<S>,
): Promise<S & HandedOverServer> {
  const { upgrader, name, server } = options;
  const problem = await (descriptorProblem ??= tryDescriptorListening());
  if (problem) throw unsupported(problem);
  if ("Bun" in globalThis && server instanceof HttpsServer) {
    // Bun's node:https does not encrypt connections it did not accept.
    throw new TypeError(
      "@tableroll/tableroll/node cannot serve a node:https server on Bun: " +
        "use @tableroll/tableroll/bun with its tls option",
    );
  }
  const listener = upgrader.fds.listen(name, listenAddressOf(options));
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
  const handle: HandedOverServer = {
    address: callableAddress(listener.address, () => acceptor.address()),
    finished: drain.finished,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return serving(
    Object.assign(server, handle),
    listener.address,
    options,
    server instanceof HttpsServer ? "https" : "http",
  );
}

/**
 * The handle's `address` on a `node:http` server: the fields of `address`
 * on a function that answers Node's `address()` with `nodeAddress`, so that
 * both `server.address.port` and `server.address()` work; JSON shows the
 * fields.
 */
function callableAddress(
  address: SocketAddress,
  nodeAddress: () => AddressInfo | string | null,
): SocketAddress & Server["address"] {
  const callable = Object.assign(() => nodeAddress(), address);
  Object.defineProperty(callable, "toJSON", { value: () => ({ ...address }) });
  return callable;
}

/**
 * Makes `server` accept on a copy of the store's descriptor `fd` (the server
 * owns and closes the descriptor it listens on); returns what stops
 * accepting.
 */
async function listenOnCopy(server: Server, fd: number): Promise<Acceptor> {
  const copy = dup(fd);
  try {
    return await listenOnDescriptor(server, copy);
  } catch (err) {
    close(copy);
    throw err;
  }
}

/** What accepts for the server: stops accepting, says where it listens. */
interface Acceptor {
  close(): unknown;
  /** Node's `address()`: `null` once it stopped listening. */
  address(): AddressInfo | string | null;
}

/** Makes `server` accept on `fd`; returns what stops accepting. */
async function listenOnDescriptor(
  server: Server,
  fd: number,
): Promise<Acceptor> {
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
  // The class's address(): serve() puts the handle's on the server itself.
  const { address } = Object.getPrototypeOf(acceptor) as NetServer;
  return {
    // net.Server's close stops listening; http.Server's would also close the
    // idle keep-alive connections, before the grace period.
    close: () => NetServer.prototype.close.call(acceptor),
    address: () => address.call(acceptor),
  };
}

/** The error of a `serve` on a runtime that cannot serve by descriptor. */
function unsupported(problem: string): TablerollError {
  const runtime = currentRuntime();
  const needs = runtime
    ? ` (it needs ${
      versionName(runtime.name, NODE_ADAPTER_SINCE[runtime.name])
    } or later)`
    : "";
  return new TablerollError(
    "unsupported",
    `@tableroll/tableroll/node cannot serve on ${runtimeName()}${needs}: ${problem}. ` +
      "Serve through the runtime's native adapter (@tableroll/tableroll/serve) instead",
  );
}

/** What {@linkcode tryDescriptorListening} found, once per process. */
let descriptorProblem: Promise<string | undefined> | undefined;

/** How long a loopback connection may take to reach the server in the trial. */
const TRIAL_MS = 2000;

/**
 * Serves a private loopback listener by descriptor, as {@linkcode serve}
 * does, and connects to it. Resolves with what went wrong, or `undefined`
 * if the server saw the connection.
 */
async function tryDescriptorListening(): Promise<string | undefined> {
  if ("Bun" in globalThis && HttpServer === HttpsServer) {
    // serve() refuses node:https servers on Bun: it must tell them apart.
    return "its node:http and node:https servers are one class, so an HTTPS server cannot be told apart";
  }
  const fd = listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 });
  const { port } = localAddress(fd) as { port: number };
  const server = createHttpServer();
  let acceptor: Acceptor | undefined;
  let client: Socket | undefined;
  try {
    try {
      acceptor = await listenOnCopy(server, fd);
    } catch (err) {
      return `listen({ fd }) failed: ${(err as Error).message}`;
    }
    const actual = (acceptor.address() as { port?: number } | null)?.port;
    if (actual !== port) {
      return `listen({ fd }) listened on port ${actual} instead of the descriptor's ${port}`;
    }
    const connected = new Promise<boolean>((resolve) =>
      server.once("connection", () => resolve(true))
    );
    client = connect(port, "127.0.0.1").on("error", () => {});
    const timeout = new AbortController();
    const seen = await Promise.race([
      connected,
      delay(TRIAL_MS, timeout.signal).then(() => false, () => false),
    ]);
    timeout.abort();
    return seen
      ? undefined
      : `a connection to a socket it listens on by descriptor did not reach the server within ${TRIAL_MS} ms`;
  } finally {
    client?.destroy();
    try {
      acceptor?.close();
    } catch {
      // Before Deno 2.8 node:http's server is no net.Server: its own close.
      server.close();
    }
    close(fd);
  }
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
