/**
 * The drain of an old process after a successor took over its listeners,
 * shared by every adapter. It drops no request:
 *
 * 1. the runtime stops accepting on this process's copy of the socket (the
 *    successor's copy is untouched: no `shutdown(2)` on a shared listener);
 * 2. every response from then on carries `Connection: close`, so keep-alive
 *    clients reconnect, which reaches the successor;
 * 3. after a grace period the server closes its listener and the keep-alive
 *    connections still idle, and waits for requests in flight;
 * 4. at the deadline WebSockets get a close frame (1001, going away) and
 *    whatever is left is closed.
 *
 * With a rollback window the server is closed (step 3) only once the window
 * is over; until then the drain can be undone: if the upgrader takes the
 * service back, the runtime accepts again and the marking stops.
 *
 * @module
 */
import { reporterOf, type Upgrader } from "../src/upgrader.ts";
import { delay } from "../ffi/wait.ts";
import type { CommonServeOptions } from "./contract.ts";
import type { EventInput, EventReporter } from "../src/events.ts";

/** Timing of the drain, as every adapter's `serve` takes it. */
export type DrainOptions = Pick<
  CommonServeOptions,
  "drainGracePeriod" | "drainDeadline"
>;

/** How a drain acts on one runtime's server. */
export interface DrainTarget {
  /** Stops accepting on this process's copy of the listener, at once. */
  stopAccepting(): void;
  /** Accepts again on this process's copy of the listener after a rollback. */
  resumeAccepting(): void | Promise<void>;
  /** Closes the listener and idle connections; resolves when requests in flight are done. */
  close(): Promise<void>;
  /** Cuts what is still open at the deadline. */
  forceClose(): void;
  /** Connections open now, when the runtime can tell. */
  openConnections?(): number;
}

/** A WebSocket the drain closes at the deadline. */
export interface ClosableWebSocket {
  /** Sends a close frame. */
  close(code?: number, reason?: string): void;
}

/**
 * `response` with `Connection: close`, so that a keep-alive client opens a
 * new connection for its next request. Upgrade responses (101) pass
 * unchanged.
 *
 * @example
 * ```ts ignore
 * const handler = async (req: Request) => closingConnection(await app(req));
 * ```
 */
export function closingConnection(response: Response): Response {
  if (response.status === 101) return response;
  try {
    response.headers.set("connection", "close");
    return response;
  } catch {
    // Immutable headers (e.g. a fetched or redirect response): copy them.
    const headers = new Headers(response.headers);
    headers.set("connection", "close");
    return new Response(response.body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }
}

/**
 * The open WebSockets of a server, and a promise for the moment none is
 * open.
 *
 * @example
 * ```ts ignore
 * const sockets = new WebSocketSet();
 * socket.addEventListener("close", sockets.track(socket));
 * await sockets.closed();
 * ```
 */
export class WebSocketSet {
  #sockets = new Set<ClosableWebSocket>();
  #noSockets?: PromiseWithResolvers<void>;

  /** Tracks an open WebSocket; call the returned function when it closed. */
  track(socket: ClosableWebSocket): () => void {
    this.#sockets.add(socket);
    return () => {
      this.#sockets.delete(socket);
      if (this.#sockets.size > 0) return;
      this.#noSockets?.resolve();
      this.#noSockets = undefined;
    };
  }

  /** Resolves once no tracked WebSocket is open. */
  closed(): Promise<void> {
    if (this.#sockets.size === 0) return Promise.resolve();
    this.#noSockets ??= Promise.withResolvers();
    return this.#noSockets.promise;
  }

  /** The WebSockets open now. */
  [Symbol.iterator](): IterableIterator<ClosableWebSocket> {
    return this.#sockets.values();
  }
}

/** `1001`: the endpoint is going away. */
const GOING_AWAY = 1001;

// Connections accepted just before the listener left epoll at a takeover
// may not have been read yet; closing the server before they are would drop
// them. A takeover's grace period is never shorter.
const SETTLE_MS = 50;

/**
 * One server's drain: tracks the server's WebSockets, marks responses while
 * draining, and runs the steps above once {@linkcode Drain.start} is called.
 *
 * @example
 * ```ts ignore
 * const drain = new Drain(target, { drainGracePeriod: 500 });
 * drain.follow(upgrader);
 * const handler = async (req: Request) => drain.mark(await app(req));
 * await drain.finished;
 * ```
 */
export class Drain {
  /** Resolves when the server closed and its WebSockets closed. */
  readonly finished: Promise<void>;
  #target: DrainTarget;
  #grace: number;
  #deadline: number;
  #draining = false;
  /** The application stopped the server: it never accepts again. */
  #stopped = false;
  /** Counts drains started, so that a drain undone does not close the server later. */
  #drains = 0;
  /** Ends the running drain's grace period early. */
  #endGrace = (): void => {};
  #sockets = new WebSocketSet();
  #done = Promise.withResolvers<void>();
  #events: { reporter: EventReporter; name: string } | undefined;

  /**
   * `target` acts on the server; `options` set the timing; the drain is
   * reported as `drain-started` and `drain-finished` events of `upgrader`
   * (the listener `name`).
   */
  constructor(
    target: DrainTarget,
    options: DrainOptions = {},
    reportTo?: { upgrader: object; name: string },
  ) {
    const reporter = reportTo && reporterOf(reportTo.upgrader);
    this.#events = reporter && { reporter, name: reportTo!.name };
    this.#target = target;
    this.#grace = options.drainGracePeriod ?? 1000;
    this.#deadline = options.drainDeadline ?? 30_000;
    this.finished = this.#done.promise;
    // A failure is reported through `finished`; one nobody awaits must not
    // take the serving process down as an unhandled rejection.
    this.finished.catch(() => {});
  }

  /** Milliseconds from a takeover until idle connections are closed. */
  get gracePeriod(): number {
    return Math.max(this.#grace, SETTLE_MS);
  }

  /** Whether the drain has started. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Starts the drain; later calls do nothing until {@linkcode Drain.resume}.
   * It never throws: a failing step rejects {@linkcode Drain.finished} once
   * the others ran.
   * The server is closed after the grace period, but not before `final`
   * resolves (the end of a rollback window); the deadline counts from the
   * start, but nothing is cut before `final`.
   */
  start(final: Promise<void> = Promise.resolve()): void {
    if (this.#draining) return;
    this.#draining = true;
    const drain = ++this.#drains;
    const started = performance.now();
    this.#report(
      { type: "drain-started", name: "", connections: this.#open() },
      "draining",
    );
    const failures: unknown[] = [];
    try {
      this.#target.stopAccepting();
    } catch (err) {
      failures.push(err); // close() still shuts the listener after the grace
    }
    // Ended early by stop() or resume(): a grace no longer needed must not
    // hold the process open.
    const grace = new AbortController();
    this.#endGrace = () => grace.abort();
    const graceOver = delay(this.gracePeriod, grace.signal).catch(() => {});
    Promise.all([graceOver, final]).then(() => {
      if (drain !== this.#drains) return; // undone by resume()
      const left = this.#deadline - (performance.now() - started);
      const deadline = setTimeout(() => this.#cut(), Math.max(left, 0));
      Promise.all([this.#target.close(), this.socketsClosed()])
        .then(() => {
          if (failures.length > 0) throw failures[0];
        })
        .then(() => this.#done.resolve(), this.#done.reject)
        .finally(() => {
          clearTimeout(deadline);
          this.#report({
            type: "drain-finished",
            name: "",
            connections: this.#open(),
            durationMs: performance.now() - started,
          }, "drained");
        });
    });
  }

  /**
   * Undoes a drain whose server is not closed yet: accepts again and stops
   * marking responses. Returns whether it did.
   */
  async resume(): Promise<boolean> {
    if (!this.#draining || this.#stopped) return false;
    this.#draining = false;
    this.#drains++;
    this.#endGrace();
    await this.#target.resumeAccepting();
    return true;
  }

  /**
   * Drains whenever a successor of `upgrader` takes over, and resumes
   * whenever `upgrader` takes the service back within its rollback window;
   * a drain waiting for the window closes the server once the upgrader
   * stopped.
   */
  follow(upgrader: Pick<Upgrader, "takeovers">): void {
    (async () => {
      let final: PromiseWithResolvers<void> | undefined;
      for await (const step of upgrader.takeovers()) {
        if (step === "upgraded") {
          final = Promise.withResolvers();
          this.start(final.promise);
        } else if (step === "final") {
          final?.resolve();
        } else {
          final = undefined;
          await this.resume();
        }
      }
      final?.resolve();
      // A listener that cannot accept again is reported like a failed drain.
    })().catch(this.#done.reject);
  }

  /**
   * The application stops the server, as gently as a drain: accepting stops
   * at once, and for the grace period responses carry `Connection: close`,
   * so that keep-alive clients leave by themselves instead of racing the
   * close of their idle connection with a request (the close would reset
   * it), and connections accepted just before are read; then `close` runs.
   * It runs at once, without a timer, with a grace period of 0, with `cut`
   * (the server cuts every connection anyway) or when a drain has begun
   * already (its grace is under way or over). Then as
   * {@linkcode Drain.stopped}; resolves when `close` has.
   */
  stop(close: () => Promise<void>, cut = false): Promise<void> {
    this.#target.stopAccepting();
    const grace = cut || this.#draining ? 0 : this.#grace;
    this.#draining = true;
    this.#endGrace();
    const closed = grace > 0
      ? delay(grace).then(close)
      : Promise.resolve().then(close);
    this.stopped(closed);
    return closed;
  }

  /**
   * The application stops the server itself: `finished` resolves with
   * `closed`, drain or not, and a rollback no longer makes it accept.
   */
  stopped(closed: Promise<void>): void {
    this.#stopped = true;
    closed.then(() => this.#done.resolve(), this.#done.reject);
  }

  #open(): number | null {
    return this.#target.openConnections?.() ?? null;
  }

  #report(
    event: Extract<EventInput, { connections: number | null }>,
    message: string,
  ): void {
    if (!this.#events) return;
    const { reporter, name } = this.#events;
    const connections = event.connections === null
      ? ""
      : ` (${event.connections} connections open)`;
    reporter.emit({ ...event, name }, `${message} ${name}${connections}`);
  }

  /** Resolves `finished` once the server stopped on its own (no drain needed). */
  settle(closed: Promise<void>): void {
    closed.then(() => {
      if (!this.#draining) this.#done.resolve();
    }, this.#done.reject);
  }

  /**
   * `response`, with `Connection: close` while draining. Upgrade responses
   * (101) pass unchanged.
   */
  mark(response: Response): Response {
    return this.#draining ? closingConnection(response) : response;
  }

  /** Tracks an open WebSocket; call the returned function when it closed. */
  track(socket: ClosableWebSocket): () => void {
    return this.#sockets.track(socket);
  }

  /** Resolves once no tracked WebSocket is open. */
  socketsClosed(): Promise<void> {
    return this.#sockets.closed();
  }

  #cut(): void {
    for (const socket of this.#sockets) {
      try {
        socket.close(GOING_AWAY, "server restarting");
      } catch {
        // Already closing.
      }
    }
    try {
      this.#target.forceClose();
    } catch (err) {
      this.#done.reject(err);
    }
  }
}
