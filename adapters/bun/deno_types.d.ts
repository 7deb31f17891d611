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
  readonly port: number | undefined;
  readonly hostname: string | undefined;
  readonly url: URL;
  stop(closeActiveConnections?: boolean): Promise<void>;
  closeIdleConnections(): number;
  reload(options: Serve.Options<WebSocketData>): Server<WebSocketData>;
  upgrade(request: Request, options?: { data?: WebSocketData }): boolean;
}

/** A server-side WebSocket. */
export interface ServerWebSocket<WebSocketData> {
  data: WebSocketData;
  send(message: string | ArrayBufferView | ArrayBuffer): number;
  close(code?: number, reason?: string): void;
}

/** The `websocket` option of `Bun.serve`. */
export interface WebSocketHandler<WebSocketData> {
  message(
    ws: ServerWebSocket<WebSocketData>,
    message: string | Uint8Array,
  ): unknown;
  open?(ws: ServerWebSocket<WebSocketData>): unknown;
  close?(
    ws: ServerWebSocket<WebSocketData>,
    code: number,
    reason: string,
  ): unknown;
  [option: string]: unknown;
}

/** `Bun.serve`'s options. */
export declare namespace Serve {
  type Options<WebSocketData, R extends string = string> = {
    fetch?(
      this: Server<WebSocketData>,
      request: Request,
      server: Server<WebSocketData>,
    ): unknown;
    routes?: Partial<Record<R, unknown>>;
    websocket?: WebSocketHandler<WebSocketData>;
    [option: string]: unknown;
  };
}
