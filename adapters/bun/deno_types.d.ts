/**
 * What Deno's type checker sees of the `bun` module: the few types
 * `adapters/bun/mod.ts` names, loosely, so that Deno can load the module
 * (e.g. behind a runtime check in code shared by both runtimes). Bun users
 * and tsc get the real types from `@types/bun`.
 *
 * @module
 */

/** Bun's server (`Bun.Server`). */
export interface Server<WebSocketData> extends Disposable {
  /** The port it listens on; `undefined` on a Unix socket. */
  readonly port: number | undefined;
  /** The host it listens on; `undefined` on a Unix socket. */
  readonly hostname: string | undefined;
  /** Its URL. */
  readonly url: URL;
  /** Stops accepting; with `true`, also closes active connections. */
  stop(closeActiveConnections?: boolean): Promise<void>;
  /** Closes connections without a request in flight; returns how many. */
  closeIdleConnections(): number;
  /** Replaces the handlers. */
  reload<R extends string>(
    options: Serve.Options<WebSocketData, R>,
  ): Server<WebSocketData>;
  /** Upgrades `request` to a WebSocket; `false` if it is not an upgrade. */
  upgrade(
    request: Request,
    options?: { headers?: HeadersInit; data?: WebSocketData },
  ): boolean;
  /** Answers `request` with the server's handlers, without a socket. */
  fetch(request: Request | string): Response | Promise<Response>;
  /** Sends `data` to every WebSocket subscribed to `topic`. */
  publish(
    topic: string,
    data: string | ArrayBufferView | ArrayBuffer | SharedArrayBuffer | Blob,
    compress?: boolean,
  ): number;
  /** How many WebSockets subscribed to `topic`. */
  subscriberCount(topic: string): number;
  /** The client's address. */
  requestIP(
    request: Request,
  ): { address: string; family: "IPv4" | "IPv6"; port: number } | null;
  /** Sets the idle timeout of `request`'s connection. */
  timeout(request: Request, seconds: number): void;
  /** The server keeps the process alive. */
  ref(): void;
  /** The server does not keep the process alive. */
  unref(): void;
  /** Requests in flight. */
  readonly pendingRequests: number;
  /** Open WebSockets. */
  readonly pendingWebSockets: number;
  /** `"http"`, `"https"`, or `null` on a Unix socket. */
  readonly protocol: "http" | "https" | null;
  /** Whether it serves in development mode. */
  readonly development: boolean;
  /** The server's id. */
  readonly id: string;
}

/** A server-side WebSocket. */
export interface ServerWebSocket<WebSocketData> {
  /** The data given to `upgrade`. */
  data: WebSocketData;
  /** Sends a message; returns the bytes sent, 0 if dropped, -1 on backpressure. */
  send(message: string | ArrayBufferView | ArrayBuffer): number;
  /** Sends a close frame. */
  close(code?: number, reason?: string): void;
}

/** The `websocket` option of `Bun.serve`. */
export interface WebSocketHandler<WebSocketData> {
  /** A message arrived. */
  message(
    ws: ServerWebSocket<WebSocketData>,
    message: string | Uint8Array,
  ): unknown;
  /** The WebSocket opened. */
  open?(ws: ServerWebSocket<WebSocketData>): unknown;
  /** The WebSocket closed. */
  close?(
    ws: ServerWebSocket<WebSocketData>,
    code: number,
    reason: string,
  ): unknown;
  /** Further options (limits, compression…). */
  [option: string]: unknown;
}

/** Types of `Bun.serve`. */
export declare namespace Serve {
  /** `Bun.serve`'s options. */
  type Options<WebSocketData, R extends string = string> = {
    /** Answers requests that no route matched. */
    fetch?(
      this: Server<WebSocketData>,
      request: Request,
      server: Server<WebSocketData>,
    ): unknown;
    /** Responses and handlers by path. */
    routes?: Partial<Record<R, unknown>>;
    /** WebSocket handlers. */
    websocket?: WebSocketHandler<WebSocketData>;
    /** Every other option of `Bun.serve`. */
    [option: string]: unknown;
  };
}
