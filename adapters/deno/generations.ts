/**
 * `Deno.serve` on an adopted listener, kept accepting through errors of
 * Deno's accept loop.
 *
 * Deno.serve's accept loop ends at the first error of `accept(2)` (`EMFILE`
 * at the descriptor limit, `ENFILE`, `ENOMEM`…): its `finished` rejects, it
 * closes its copy of the listener and never accepts again, while the
 * connections it has are still served. The store's copy of the listener stays
 * open, so the kernel keeps queueing connections. {@linkcode ServerGenerations}
 * then adopts the listener into a new `Deno.serve` after a backoff (5 ms,
 * doubling up to 1 s, as Go's `net/http`), again while that fails. The old
 * server answers its clients with `Connection: close` and is shut down after
 * the grace period, once its WebSockets closed; requests in flight finish.
 *
 * @module
 */
import type { SocketAddress } from "../../ffi/socket.ts";
import { delay } from "../../ffi/wait.ts";
import type { EventReporter } from "../../src/events.ts";
import { reporterOf } from "../../src/upgrader.ts";
import {
  type AdoptedListener,
  type PlaceholderAddress,
  serveAdopted,
} from "../adopt.ts";
import type { StoreListener } from "../contract.ts";
import { type ClosableWebSocket, WebSocketSet } from "../drain.ts";

/** The first wait before adopting the listener again; it doubles on each failure. */
const FIRST_WAIT_MS = 5;
/** The longest wait. */
const LONGEST_WAIT_MS = 1000;

/** Deno's server for the adapter's listeners. */
export type DenoServer = Deno.HttpServer<Deno.NetAddr | Deno.UnixAddr>;

/** One `Deno.serve` on the listener. */
export class Generation {
  /** Its accept loop ended: it only serves the connections it has. */
  retired = false;
  /** Deno's server, once started. */
  server!: DenoServer;
  /** The listener as adopted into it, once started. */
  adopted!: AdoptedListener;
  readonly #sockets = new WebSocketSet();

  /** Tracks one of its WebSockets; call the returned function when it closed. */
  track(socket: ClosableWebSocket): () => void {
    return this.#sockets.track(socket);
  }

  /** Resolves once none of its WebSockets is open. */
  socketsClosed(): Promise<void> {
    return this.#sockets.closed();
  }
}

/** Options of {@linkcode ServerGenerations}. */
export interface GenerationsOptions {
  /** The store's listener, which stays open. */
  listener: StoreListener;
  /** Starts `Deno.serve` on `placeholder` with `handler`. */
  open(
    placeholder: PlaceholderAddress,
    handler: Deno.ServeHandler<Deno.NetAddr | Deno.UnixAddr>,
  ): DenoServer;
  /** Makes the handler of a new server (called once per server). */
  handlerFor(
    generation: Generation,
  ): Deno.ServeHandler<Deno.NetAddr | Deno.UnixAddr>;
  /** Milliseconds an old server keeps idle connections before it is shut down. */
  gracePeriod: number;
  /** Reports `accept-failed` and `accept-resumed` as events of this upgrader. */
  reportTo: { upgrader: object; name: string };
}

/** Where the listener stands after its accept loop failed. */
interface Failure {
  since: number;
  attempts: number;
  waitMs: number;
}

/**
 * The servers on one adopted listener: the one accepting, and older ones
 * whose accept loop ended and that still serve their connections.
 *
 * Throws what {@linkcode serveAdopted} throws when the first server cannot be
 * adopted into.
 *
 * @example
 * ```ts ignore
 * const servers = new ServerGenerations({
 *   listener: upgrader.fds.listen("web", { port: 8080 }),
 *   open: (placeholder, handler) => Deno.serve({ ...placeholder, handler }),
 *   handlerFor: () => handler,
 *   gracePeriod: 1000,
 *   reportTo: { upgrader, name: "web" },
 * });
 * await servers.shutdown();
 * ```
 */
export class ServerGenerations {
  /** The listener's real address. */
  readonly address: SocketAddress;
  /** Resolves if the accepting server ended without being shut down. */
  readonly ended: Promise<void>;
  readonly #options: GenerationsOptions;
  readonly #reporter: EventReporter | undefined;
  readonly #ended = Promise.withResolvers<void>();
  /** Every server not shut down yet. */
  readonly #all = new Set<Generation>();
  /** The server accepting; none while the listener is adopted again. */
  #current: Generation | undefined;
  #failure: Failure | undefined;
  #accepting = true;
  #closing = false;
  #referenced = true;
  #retrying = false;
  /** Aborted when accepting stops: ends the wait before adopting again. */
  #stopWaiting = new AbortController();
  /** Aborted at shutdown: ends old servers' grace periods. */
  readonly #closed = new AbortController();

  /** Adopts the listener into a first server. */
  constructor(options: GenerationsOptions) {
    this.#options = options;
    this.#reporter = reporterOf(options.reportTo.upgrader);
    this.ended = this.#ended.promise;
    this.#current = this.#start();
    this.address = this.#current.adopted.address;
  }

  /** Stops accepting on this process's copy of the listener, at once. */
  stopAccepting(): void {
    this.#accepting = false;
    this.#stopWaiting.abort();
    this.#stopWaiting = new AbortController();
    this.#current?.adopted.stopAccepting();
  }

  /** Accepts again after {@linkcode ServerGenerations.stopAccepting}. */
  resumeAccepting(): void {
    this.#accepting = true;
    if (this.#current) this.#current.adopted.resumeAccepting();
    else void this.#adoptAgain();
  }

  /**
   * Shuts every server down: the listener is closed, idle connections too,
   * and it resolves once requests in flight are done.
   */
  async shutdown(): Promise<void> {
    this.#closing = true;
    this.stopAccepting();
    this.#closed.abort();
    await Promise.all([...this.#all].map((g) => g.server.shutdown()));
  }

  /** Every server keeps the process alive (the default). */
  ref(): void {
    this.#referenced = true;
    for (const generation of this.#all) generation.server.ref();
  }

  /** No server keeps the process alive. */
  unref(): void {
    this.#referenced = false;
    for (const generation of this.#all) generation.server.unref();
  }

  /**
   * Tracks a WebSocket whose server is not known: every server serving now
   * waits for it before it is shut down.
   */
  trackEverywhere(socket: ClosableWebSocket): () => void {
    const untrack = [...this.#all].map((g) => g.track(socket));
    return () => untrack.forEach((done) => done());
  }

  #start(): Generation {
    const generation = new Generation();
    const handler = this.#options.handlerFor(generation);
    const { server, listener } = serveAdopted(
      this.#options.listener,
      (placeholder) =>
        this.#options.open(placeholder, (request, info) => {
          if (this.#failure) this.#accepted(generation);
          return handler(request, info);
        }),
      (server) => server.shutdown(),
      this.#options.reportTo.upgrader,
    );
    generation.server = server;
    generation.adopted = listener;
    this.#all.add(generation);
    if (!this.#referenced) server.unref();
    server.finished.then(
      () => {
        if (!this.#closing && generation === this.#current) {
          this.#ended.resolve();
        }
      },
      (error) => this.#acceptFailed(generation, error),
    );
    return generation;
  }

  #acceptFailed(generation: Generation, error: unknown): void {
    void this.#retire(generation);
    if (this.#closing || generation !== this.#current) return;
    this.#current = undefined;
    if (this.#failure) {
      // The server adopted again failed before it served: wait longer.
      this.#failure.waitMs = Math.min(
        this.#failure.waitMs * 2,
        LONGEST_WAIT_MS,
      );
    } else {
      this.#failure = {
        since: performance.now(),
        attempts: 0,
        waitMs: FIRST_WAIT_MS,
      };
      this.#reporter?.emit(
        { type: "accept-failed", name: this.#options.reportTo.name, error },
        `stopped accepting on ${this.#options.reportTo.name}: ${
          (error as Error)?.message ?? error
        }; serving the connections open, accepting again once it can`,
      );
    }
    if (this.#accepting) void this.#adoptAgain();
  }

  /** Adopts the listener into a new server, after a wait, until one is running. */
  async #adoptAgain(): Promise<void> {
    if (this.#retrying) return;
    this.#retrying = true;
    try {
      while (this.#accepting && !this.#closing && !this.#current) {
        const failure = this.#failure!; // set by #acceptFailed
        try {
          await delay(failure.waitMs, this.#stopWaiting.signal);
        } catch {
          continue; // accepting stopped; it may have resumed meanwhile
        }
        failure.attempts++;
        try {
          this.#current = this.#start();
        } catch {
          // Out of descriptors still, most likely: nothing was left behind.
          failure.waitMs = Math.min(failure.waitMs * 2, LONGEST_WAIT_MS);
        }
      }
    } finally {
      this.#retrying = false;
    }
  }

  /** A request reached `generation`: if it is the one adopted again, it accepts. */
  #accepted(generation: Generation): void {
    if (!this.#failure || generation !== this.#current) return;
    const { since, attempts } = this.#failure;
    this.#failure = undefined;
    const durationMs = performance.now() - since;
    this.#reporter?.emit(
      {
        type: "accept-resumed",
        name: this.#options.reportTo.name,
        durationMs,
        attempts,
      },
      `accepting on ${this.#options.reportTo.name} again after ${
        Math.round(durationMs)
      } ms (${attempts} attempts)`,
    );
  }

  /**
   * Lets an old server's clients move on (its responses carry
   * `Connection: close`), then shuts it down after the grace period, once
   * its WebSockets closed.
   */
  async #retire(generation: Generation): Promise<void> {
    generation.retired = true;
    try {
      await delay(this.#options.gracePeriod, this.#closed.signal);
    } catch {
      return; // shutdown() closes it
    }
    await generation.socketsClosed();
    if (this.#closing) return;
    // A failure stays for shutdown(), which reports it through `finished`.
    await generation.server.shutdown().then(
      () => this.#all.delete(generation),
      () => {},
    );
  }
}
