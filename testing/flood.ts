/**
 * A client that connects to a Unix socket and hangs up at once, over and
 * over, as a health probe pointed at the wrong socket does: for the test and
 * the benchmark of what refused connections cost the process behind it.
 *
 * @module
 */
import { connect } from "node:net";
import { now, sleep } from "./clock.ts";

/** What a flood did. */
export interface Flood {
  /** Connections made (and closed). */
  connections: number;
  /** Attempts that found the listener's backlog full, retried 1 ms later. */
  backlogFull: number;
  /** How long it took, in milliseconds. */
  ms: number;
}

/**
 * Connects to the Unix socket `path` and closes each connection as soon as
 * it is made, `count` times one after the other. An attempt that finds the
 * backlog full (the listener is behind) is retried 1 ms later. Rejects on
 * any other error, or if the connections were not made within `timeoutMs`.
 */
export async function connectAndHangUp(
  path: string,
  count: number,
  timeoutMs: number,
): Promise<Flood> {
  const start = now();
  let backlogFull = 0;
  for (let made = 0; made < count;) {
    if (now() - start > timeoutMs) {
      throw new Error(
        `${made} of ${count} connections to ${path} made in ${timeoutMs} ms`,
      );
    }
    if (await connection(path)) {
      made++;
    } else {
      backlogFull++;
      await sleep(1);
    }
  }
  return { connections: count, backlogFull, ms: now() - start };
}

/**
 * Errors of a connection that was made: Bun reports a reset, not `connect`,
 * when the listener has already accepted and closed it.
 */
const MADE = new Set(["ECONNRESET"]);
/**
 * Errors of an attempt that found the backlog full: `EAGAIN` from
 * `connect(2)`, which Bun reports as `ECONNREFUSED`.
 */
const BACKLOG_FULL = new Set(["EAGAIN", "ECONNREFUSED"]);

/** One connection, closed at once: `true`, or `false` if the backlog was full. */
function connection(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", (err: Error & { code?: string }) => {
      socket.destroy();
      if (MADE.has(err.code ?? "")) resolve(true);
      else if (BACKLOG_FULL.has(err.code ?? "")) resolve(false);
      else reject(err);
    });
  });
}
