/**
 * Passing descriptors over Unix sockets: `sendmsg`/`recvmsg` with
 * `SCM_RIGHTS`.
 *
 * @module
 */
import {
  backend,
  call,
  CMSGHDR,
  cmsgLen,
  cmsgSpace,
  IOVEC,
  libc,
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_TRUNC,
  MSGHDR,
  SCM_RIGHTS,
  SOL_SOCKET,
} from "./libc.ts";
import { Errno, TruncatedMessageError } from "./errors.ts";

/** The most descriptors one message can carry (the kernel's `SCM_MAX_FD`). */
export const MAX_FDS_PER_MESSAGE = 253;

/**
 * The structs every call fills in, allocated once: a `msghdr`, its `iovec`,
 * room for the most descriptors a message carries, and the data bytes.
 * Array buffer contents never move, so their addresses are taken once too
 * (taking an address costs about half a microsecond in Deno).
 */
class Scratch {
  readonly structs: Uint8Array;
  readonly view: DataView;
  readonly control: Uint8Array;
  readonly #iovAddress: bigint;
  readonly #controlAddress: bigint;
  #data = new Uint8Array(new ArrayBuffer(4096));
  #dataAddress = backend().addressOf(this.#data);

  constructor() {
    const controlAt = MSGHDR.size + IOVEC.size;
    const size = controlAt + cmsgSpace(MAX_FDS_PER_MESSAGE);
    this.structs = new Uint8Array(new ArrayBuffer(size));
    this.view = new DataView(this.structs.buffer);
    this.control = this.structs.subarray(controlAt);
    const base = backend().addressOf(this.structs);
    this.#iovAddress = base + BigInt(MSGHDR.size);
    this.#controlAddress = base + BigInt(controlAt);
  }

  /** The data buffer, at least `length` bytes long. */
  data(length: number): Uint8Array {
    if (this.#data.length < length) {
      this.#data = new Uint8Array(new ArrayBuffer(length));
      this.#dataAddress = backend().addressOf(this.#data);
    }
    return this.#data;
  }

  /** Fills in the `msghdr` for `dataLength` bytes and `controlLength` bytes of control data. */
  prepare(dataLength: number, controlLength: number): void {
    const view = this.view;
    view.setBigUint64(MSGHDR.name, 0n, true);
    view.setUint32(MSGHDR.namelen, 0, true);
    view.setBigUint64(MSGHDR.iov, this.#iovAddress, true);
    view.setBigUint64(MSGHDR.iovlen, 1n, true);
    view.setBigUint64(
      MSGHDR.control,
      controlLength > 0 ? this.#controlAddress : 0n,
      true,
    );
    view.setBigUint64(MSGHDR.controllen, BigInt(controlLength), true);
    view.setInt32(MSGHDR.flags, 0, true);
    view.setBigUint64(MSGHDR.size + IOVEC.base, this.#dataAddress, true);
    view.setBigUint64(MSGHDR.size + IOVEC.len, BigInt(dataLength), true);
  }
}

let scratch: Scratch | undefined;

/**
 * Sends `data` with `fds` attached in one `sendmsg` (blocking unless the
 * socket is non-blocking). Returns the number of data bytes sent, or `null`
 * if a non-blocking socket would block. The descriptors travel with the first
 * byte, so a partial send has still delivered all of them. More than
 * {@linkcode MAX_FDS_PER_MESSAGE} descriptors throw a `RangeError`: split
 * them over several messages.
 */
export function sendWithFds(
  sock: number,
  data: Uint8Array,
  fds: readonly number[],
  options: { dontWait?: boolean } = {},
): number | null {
  if (data.length === 0) {
    throw new TypeError(
      "sendWithFds needs at least one data byte to carry the descriptors",
    );
  }
  if (fds.length > MAX_FDS_PER_MESSAGE) {
    // The kernel would fail with a bare EINVAL.
    throw new RangeError(
      `one message carries at most ${MAX_FDS_PER_MESSAGE} descriptors (SCM_MAX_FD), not ${fds.length}: send them in several messages`,
    );
  }
  scratch ??= new Scratch();
  scratch.data(data.length).set(data);
  const controlLength = fds.length > 0 ? cmsgSpace(fds.length) : 0;
  scratch.prepare(data.length, controlLength);
  if (fds.length > 0) {
    const view = scratch.view;
    const at = scratch.control.byteOffset;
    view.setBigUint64(at + CMSGHDR.len, BigInt(cmsgLen(fds.length)), true);
    view.setInt32(at + CMSGHDR.level, SOL_SOCKET, true);
    view.setInt32(at + CMSGHDR.type, SCM_RIGHTS, true);
    for (let i = 0; i < fds.length; i++) {
      view.setInt32(at + CMSGHDR.size + 4 * i, fds[i], true);
    }
  }
  const flags = MSG_NOSIGNAL | (options.dontWait ? MSG_DONTWAIT : 0);
  return call("sendmsg", [sock, scratch.structs, flags], {
    unless: Errno.EAGAIN,
  });
}

/** What one `recvmsg` delivered. */
export interface ReceivedMessage {
  /** The data part (empty at end of stream). */
  data: Uint8Array;
  /** The descriptors that came with it, close-on-exec. */
  fds: number[];
}

/**
 * One `recvmsg` of at most `maxData` bytes and `maxFds` descriptors, with
 * `MSG_CMSG_CLOEXEC`. Returns `null`
 * if a non-blocking socket has nothing. If the kernel had to drop
 * descriptors (`MSG_CTRUNC`) the ones that arrived are closed and a
 * {@linkcode TruncatedMessageError} is thrown: a descriptor is never
 * silently lost.
 */
export function receiveWithFds(
  sock: number,
  maxData: number,
  maxFds: number,
  options: { dontWait?: boolean } = {},
): ReceivedMessage | null {
  scratch ??= new Scratch();
  const data = scratch.data(maxData);
  // No message carries more, so room for more is never needed.
  const room = Math.min(Math.max(1, maxFds), MAX_FDS_PER_MESSAGE);
  scratch.prepare(maxData, cmsgSpace(room));
  const flags = MSG_CMSG_CLOEXEC | (options.dontWait ? MSG_DONTWAIT : 0);
  const r = call("recvmsg", [sock, scratch.structs, flags], {
    unless: Errno.EAGAIN,
  });
  if (r === null) return null;
  const view = scratch.view;
  const fds = parseRights(
    view,
    scratch.control.byteOffset,
    Number(view.getBigUint64(MSGHDR.controllen, true)),
  );
  const msgFlags = view.getInt32(MSGHDR.flags, true);
  if (msgFlags & MSG_CTRUNC || fds.length > maxFds) {
    fds.forEach((fd) => libc.close(fd));
    throw new TruncatedMessageError(`the descriptor part (room for ${maxFds})`);
  }
  if (msgFlags & MSG_TRUNC) {
    fds.forEach((fd) => libc.close(fd));
    throw new TruncatedMessageError(
      `the data part (room for ${maxData} bytes)`,
    );
  }
  return { data: data.slice(0, r), fds };
}

/** The descriptors of the `SCM_RIGHTS` messages in `length` bytes of control data at `start`. */
function parseRights(view: DataView, start: number, length: number): number[] {
  const fds: number[] = [];
  for (let off = start; off + CMSGHDR.size <= start + length;) {
    const len = Number(view.getBigUint64(off + CMSGHDR.len, true));
    if (len < CMSGHDR.size) break;
    if (
      view.getInt32(off + CMSGHDR.level, true) === SOL_SOCKET &&
      view.getInt32(off + CMSGHDR.type, true) === SCM_RIGHTS
    ) {
      for (let p = off + CMSGHDR.size; p + 4 <= off + len; p += 4) {
        fds.push(view.getInt32(p, true));
      }
    }
    off += (len + 7) & ~7;
  }
  return fds;
}
