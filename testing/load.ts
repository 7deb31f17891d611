/**
 * Bounded loopback HTTP load: a few keep-alive clients (one reused connection
 * each) and a few new-connection clients (one connection per request), paced
 * to a total request rate. Every request becomes a {@linkcode Sample}; nothing
 * is retried, so a refused or reset connection shows up as a failure.
 *
 * @module
 */
import http from "node:http";
import { now, sleep } from "./clock.ts";

/** How a client uses connections. */
export type ClientKind = "keep-alive" | "new-connection";

/** One request as the client saw it. Times are milliseconds on `now()` of `clock.ts`. */
export interface Sample {
  /** When the request was sent. */
  start: number;
  /** When the response ended or the request failed. */
  end: number;
  /** The pid named in the body (`hello from <pid>`); `null` on failure. */
  pid: number | null;
  /** The client that sent it. */
  kind: ClientKind;
  /** Why the request failed (error code, status, or body); absent on success. */
  error?: string;
}

/** Options of {@linkcode startLoad}. */
export interface LoadOptions {
  /** Loopback address of the server, e.g. `127.0.0.1`. */
  hostname: string;
  /** Port of the server. */
  port: number;
  /** Number of clients that reuse one connection each. */
  keepAliveClients: number;
  /** Number of clients that open a new connection per request. */
  newConnectionClients: number;
  /** Total requests per second over all clients; 0 sends back to back. */
  rate: number;
  /** Requests after which every client stops. */
  maxRequests: number;
  /** A request still unanswered after this long fails with `timeout`. */
  requestTimeoutMs?: number;
  /** Called with every finished sample. */
  onSample?: (sample: Sample) => void;
}

/** A running load; {@linkcode Load.stop} ends it after in-flight requests. */
export interface Load {
  /** Every sample so far, in completion order. */
  readonly samples: Sample[];
  /** Resolves once every client has stopped (at `maxRequests` or `stop()`). */
  readonly done: Promise<void>;
  /** Lets in-flight requests finish, then resolves; sends nothing new. */
  stop(): Promise<void>;
}

const BODY = /^hello from (\d+)/;

/** Starts the clients; they run until `maxRequests` or {@linkcode Load.stop}. */
export function startLoad(options: LoadOptions): Load {
  const samples: Sample[] = [];
  const clients = options.keepAliveClients + options.newConnectionClients;
  const interval = options.rate > 0 ? (1000 * clients) / options.rate : 0;
  let sent = 0;
  let stopped = false;

  const record = (sample: Sample) => {
    samples.push(sample);
    options.onSample?.(sample);
  };

  const runClient = async (kind: ClientKind, offset: number) => {
    const agent = kind === "keep-alive"
      ? new http.Agent({ keepAlive: true, maxSockets: 1 })
      : undefined;
    // Stagger the clients over one interval so their requests interleave.
    let next = now() + offset * interval / clients;
    try {
      while (!stopped && sent < options.maxRequests) {
        const wait = next - now();
        if (wait > 0) await sleep(wait);
        if (stopped) break;
        sent++;
        record(await request(options, kind, agent));
        // Never try to catch up on a backlog: that would turn a stall into a burst.
        next = Math.max(next + interval, now());
      }
    } finally {
      agent?.destroy();
    }
  };

  const done = Promise.all([
    ...Array.from(
      { length: options.keepAliveClients },
      (_, i) => runClient("keep-alive", i),
    ),
    ...Array.from(
      { length: options.newConnectionClients },
      (_, i) => runClient("new-connection", options.keepAliveClients + i),
    ),
  ]).then(() => {});

  return {
    samples,
    done,
    stop() {
      stopped = true;
      return done;
    },
  };
}

/** One GET on a new connection to 127.0.0.1:`port`, failing after `timeoutMs`. */
export async function getOnce(
  port: number,
  timeoutMs?: number,
): Promise<Sample> {
  const load = startLoad({
    hostname: "127.0.0.1",
    port,
    keepAliveClients: 0,
    newConnectionClients: 1,
    rate: 0,
    maxRequests: 1,
    requestTimeoutMs: timeoutMs,
  });
  await load.done;
  return load.samples[0];
}

/** The body of one GET on a new connection to 127.0.0.1:`port`. */
export function getBody(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ host: "127.0.0.1", port, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => text += chunk);
      res.on("end", () => resolve(text));
    }).on("error", reject);
  });
}

/**
 * The body of the first GET on a new connection that process `pid` answers
 * (`hello from <pid>…`); fails after `timeoutMs`. Right after a takeover
 * the old copy may still accept a connection or two: both accept on the
 * socket until the old one hears that it was taken over.
 */
export async function bodyFrom(
  port: number,
  pid: number,
  timeoutMs = 5_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await getBody(port);
    if (text.startsWith(`hello from ${pid}`)) return text;
    if (Date.now() > deadline) {
      throw new Error(
        `no request served by ${pid} in ${timeoutMs} ms: ${text}`,
      );
    }
  }
}

function request(
  options: LoadOptions,
  kind: ClientKind,
  agent: http.Agent | undefined,
): Promise<Sample> {
  const start = now();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (pid: number | null, error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ start, end: now(), pid, kind, ...(error ? { error } : {}) });
    };
    const req = http.get({
      hostname: options.hostname,
      port: options.port,
      path: "/",
      // `agent: false` plus `Connection: close` gives one connection per request.
      agent: agent ?? false,
      headers: agent ? {} : { connection: "close" },
    }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => body += chunk);
      res.on("error", (err: Error) => finish(null, describe(err)));
      res.on("end", () => {
        const match = BODY.exec(body);
        if (res.statusCode !== 200) finish(null, `status ${res.statusCode}`);
        else if (!match) {
          finish(null, `unexpected body ${JSON.stringify(body)}`);
        } else finish(Number(match[1]));
      });
    });
    // A timer of its own: the socket's idle timeout does not cover every stall.
    const timer = setTimeout(() => {
      finish(null, "timeout");
      req.destroy();
    }, options.requestTimeoutMs ?? 10_000);
    req.on("error", (err: Error) => finish(null, describe(err)));
  });
}

function describe(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : err.message;
}
