/**
 * What Deno's type checker sees of the `bun` module: the few types
 * `adapters/bun/mod.ts` names, loosely, so that Deno can load the module
 * (e.g. behind a runtime check in code shared by both runtimes). Bun users
 * and tsc get the real types from `@types/bun`.
 *
 * @module
 */

/** Bun's server, as far as the adapter uses it. */
export interface Server<WebSocketData> {
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
  reload(options: Serve.Options<WebSocketData>): Server<WebSocketData>;
  /** Upgrades `request` to a WebSocket; `false` if it is not an upgrade. */
  upgrade(request: Request, options?: { data?: WebSocketData }): boolean;
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
