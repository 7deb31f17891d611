/**
 * One control connection between two tableroll processes: exact-size reads
 * (never a byte past what the protocol asks for, so descriptors attached to
 * the next message are not lost), writes, and descriptor messages. Every wait
 * is cancellable through an `AbortSignal`.
 *
 * @module
 */
import { TruncatedMessageError } from "../ffi/errors.ts";
import { close, readyNow, setNonBlocking } from "../ffi/fd.ts";
import { receiveWithFds, sendWithFds } from "../ffi/fdpass.ts";
import { POLLIN, POLLOUT } from "../ffi/libc.ts";
import { signalUntilClosed, waitReadable, waitWritable } from "../ffi/wait.ts";
import { TablerollError } from "./errors.ts";
import { blobLength } from "./protocol.ts";

/** A descriptor message as received: its data part and descriptors. */
export interface FdMessage {
  data: Uint8Array;
  fds: number[];
}

/** A non-blocking Unix stream socket speaking the tableroll protocol. */
export class ControlConn {
  readonly #fd: number;
  #closed = false;

  /**
   * Takes ownership of `fd` and makes it non-blocking. It raises `SIGIO`
   * until closed, so that a write refused for want of space is resumed as
   * soon as the peer has read (a takeover of many descriptors fills the
   * buffer).
   */
  constructor(fd: number) {
    this.#fd = fd;
    setNonBlocking(fd, true);
    signalUntilClosed(fd);
  }

  /** Reads exactly `n` bytes. Descriptors arriving with them are closed and rejected. */
  async readExact(n: number, signal?: AbortSignal): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    for (let got = 0; got < n;) {
      const message = await this.readFdMessage(n - got, 1, signal);
      if (message.fds.length > 0) {
        message.fds.forEach(close);
        throw new TablerollError(
          "protocol",
          "the peer attached descriptors where plain bytes were expected",
        );
      }
      out.set(message.data, got);
      got += message.data.length;
    }
    return out;
  }

  /** Reads one length-prefixed blob of at most `maxBytes` and returns its body. */
  async readBlob(
    signal?: AbortSignal,
    maxBytes?: number,
  ): Promise<Uint8Array> {
    const length = blobLength(await this.readExact(4, signal), maxBytes);
    return await this.readExact(length, signal);
  }

  /** Reads one descriptor message: up to `maxData` bytes and `maxFds` descriptors. */
  async readFdMessage(
    maxData: number,
    maxFds: number,
    signal?: AbortSignal,
  ): Promise<FdMessage> {
    const message = await this.#whenReady(
      () => receiveWithFds(this.#fd, maxData, maxFds, { dontWait: true }),
      POLLIN,
      signal,
    );
    if (message.data.length === 0 && message.fds.length === 0) {
      throw new TablerollError(
        "peer-closed",
        "the peer closed the control connection",
      );
    }
    return message;
  }

  /**
   * Writes all of `data`, with `send(MSG_NOSIGNAL)`: a peer that has gone
   * is an error here, never a `SIGPIPE` that would end the process.
   */
  async writeAll(data: Uint8Array, signal?: AbortSignal): Promise<void> {
    for (let off = 0; off < data.length;) {
      off += await this.#whenReady(
        () => sendWithFds(this.#fd, data.subarray(off), [], { dontWait: true }),
        POLLOUT,
        signal,
      );
    }
  }

  /** Sends `data` with one descriptor attached, in one `sendmsg` (plus writes for a partial send). */
  async sendFd(
    data: Uint8Array,
    fd: number,
    signal?: AbortSignal,
  ): Promise<void> {
    const sent = await this.#whenReady(
      () => sendWithFds(this.#fd, data, [fd], { dontWait: true }),
      POLLOUT,
      signal,
    );
    // The descriptor travelled with the first byte; finish the data part.
    await this.writeAll(data.subarray(sent), signal);
  }

  /**
   * Runs the non-blocking `attempt` until it does not return `null` (would
   * block), waiting for the socket to be ready for `events` in between. A
   * read is tried once data is there, a write at once: while nothing blocks
   * each message takes one system call, so a fault injected at the n-th call
   * hits the n-th message. Only a refused write makes the kernel signal
   * (`SIGIO`) when space frees up, so a write is never waited for first.
   */
  async #whenReady<T>(
    attempt: () => T | null,
    events: number,
    signal?: AbortSignal,
  ): Promise<T> {
    if (events === POLLIN && readyNow(this.#fd, POLLIN) === 0) {
      await this.#wait(POLLIN, signal);
    }
    for (;;) {
      const result = this.#guard(attempt);
      if (result !== null) return result;
      await this.#wait(events, signal);
    }
  }

  #wait(events: number, signal?: AbortSignal): Promise<number> {
    // This process made the connection and never passes it on.
    return (events === POLLIN ? waitReadable : waitWritable)(this.#fd, {
      signal,
      exclusive: true,
    });
  }

  /**
   * Turns an I/O error on a connection the peer closed into a
   * {@linkcode PeerClosedError}, and more descriptors than asked for into a
   * {@linkcode ProtocolError}.
   */
  #guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof TruncatedMessageError) {
        throw new TablerollError(
          "protocol",
          "the peer attached more descriptors to a message than the protocol allows there",
          { cause: err },
        );
      }
      const code = (err as { code?: string }).code;
      if (code === "EPIPE" || code === "ECONNRESET") {
        throw new TablerollError(
          "peer-closed",
          "the peer closed the control connection",
          {
            cause: err,
          },
        );
      }
      throw err;
    }
  }

  /**
   * Waits up to `ms` for the peer to hang up (or to send anything, which the
   * protocol has no place for at the end); resolves whether it did. Rejects
   * with `signal`'s reason if it aborts first.
   */
  async hungUp(ms: number, signal: AbortSignal): Promise<boolean> {
    const timeout = AbortSignal.timeout(ms);
    try {
      await this.#wait(POLLIN, AbortSignal.any([signal, timeout]));
      return true;
    } catch (err) {
      if (signal.aborted) throw err;
      return false;
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    close(this.#fd);
  }
}
