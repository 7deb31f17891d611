/**
 * Passing descriptors over Unix sockets: `sendmsg`/`recvmsg` with
 * `SCM_RIGHTS`.
 *
 * @module
 */
import { backend, libc, syscallError } from "./libc.ts";
import {
  CMSGHDR,
  cmsgLen,
  cmsgSpace,
  IOVEC,
  MSG_CMSG_CLOEXEC,
  MSG_CTRUNC,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_TRUNC,
  MSGHDR,
  SCM_RIGHTS,
  SOL_SOCKET,
} from "./platform.ts";
import { Errno } from "./errno.ts";
import { TruncatedMessageError } from "./errors.ts";

/** The most descriptors one message can carry (the kernel's `SCM_MAX_FD`). */
export const MAX_FDS_PER_MESSAGE = 253;

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
  const msg = new Uint8Array(MSGHDR.size);
  const msgView = new DataView(msg.buffer);
  const iov = new Uint8Array(IOVEC.size);
  const iovView = new DataView(iov.buffer);
  iovView.setBigUint64(IOVEC.base, backend.addressOf(data), true);
  iovView.setBigUint64(IOVEC.len, BigInt(data.length), true);
  msgView.setBigUint64(MSGHDR.iov, backend.addressOf(iov), true);
  msgView.setBigUint64(MSGHDR.iovlen, 1n, true);
  let control: Uint8Array | undefined;
  if (fds.length > 0) {
    control = new Uint8Array(cmsgSpace(fds.length));
    const cview = new DataView(control.buffer);
    cview.setBigUint64(CMSGHDR.len, BigInt(cmsgLen(fds.length)), true);
    cview.setInt32(CMSGHDR.level, SOL_SOCKET, true);
    cview.setInt32(CMSGHDR.type, SCM_RIGHTS, true);
    fds.forEach((fd, i) => cview.setInt32(CMSGHDR.size + 4 * i, fd, true));
    msgView.setBigUint64(MSGHDR.control, backend.addressOf(control), true);
    msgView.setBigUint64(MSGHDR.controllen, BigInt(control.length), true);
  }
  const flags = MSG_NOSIGNAL | (options.dontWait ? MSG_DONTWAIT : 0);
  const r = backend.fn.sendmsg(sock, msg, flags);
  keepAlive(data, iov, control);
  if (r >= 0) return r;
  const errno = backend.errno();
  if (errno === Errno.EAGAIN) return null;
  throw syscallError("sendmsg", errno);
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
 * `MSG_CMSG_CLOEXEC`. Returns `null` if a non-blocking socket has nothing.
 * If the kernel had to drop descriptors (`MSG_CTRUNC`) the ones that arrived
 * are closed and a {@linkcode TruncatedMessageError} is thrown: a descriptor
 * is never silently lost.
 */
export function receiveWithFds(
  sock: number,
  maxData: number,
  maxFds: number,
  options: { dontWait?: boolean } = {},
): ReceivedMessage | null {
  const data = new Uint8Array(Math.max(1, maxData));
  const iov = new Uint8Array(IOVEC.size);
  const iovView = new DataView(iov.buffer);
  iovView.setBigUint64(IOVEC.base, backend.addressOf(data), true);
  iovView.setBigUint64(IOVEC.len, BigInt(maxData), true);
  const control = new Uint8Array(cmsgSpace(Math.max(1, maxFds)));
  const msg = new Uint8Array(MSGHDR.size);
  const msgView = new DataView(msg.buffer);
  msgView.setBigUint64(MSGHDR.iov, backend.addressOf(iov), true);
  msgView.setBigUint64(MSGHDR.iovlen, 1n, true);
  msgView.setBigUint64(MSGHDR.control, backend.addressOf(control), true);
  msgView.setBigUint64(MSGHDR.controllen, BigInt(control.length), true);
  const flags = MSG_CMSG_CLOEXEC | (options.dontWait ? MSG_DONTWAIT : 0);
  const r = backend.fn.recvmsg(sock, msg, flags);
  keepAlive(data, iov, control);
  if (r < 0) {
    const errno = backend.errno();
    if (errno === Errno.EAGAIN) return null;
    throw syscallError("recvmsg", errno);
  }
  const fds = parseRights(
    control,
    Number(msgView.getBigUint64(MSGHDR.controllen, true)),
  );
  const msgFlags = msgView.getInt32(MSGHDR.flags, true);
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

function parseRights(control: Uint8Array, length: number): number[] {
  const view = new DataView(control.buffer);
  const fds: number[] = [];
  for (let off = 0; off + CMSGHDR.size <= length;) {
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

/** Buffers whose addresses were stored in structs must outlive the call. */
function keepAlive(..._buffers: unknown[]): void {}
