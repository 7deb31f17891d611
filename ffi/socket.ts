/**
 * Sockets through libc: create, bind, listen, accept, connect, and the
 * socket options tableroll inspects.
 *
 * @module
 */
import { call, libc } from "./libc.ts";
import { Errno } from "./errno.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  SO_ACCEPTCONN,
  SO_DOMAIN,
  SO_PEERCRED,
  SO_REUSEADDR,
  SO_TYPE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_SEQPACKET,
  SOCK_STREAM,
  SOCKADDR_STORAGE_SIZE,
  SOL_SOCKET,
  UCRED,
} from "./platform.ts";
import { decodeSockaddr, encodeSockaddr, formatAddress } from "./sockaddr.ts";
import type { SocketAddress } from "./sockaddr.ts";
import { pathIdentity, unlink } from "./fd.ts";
import type { SyscallError } from "./errors.ts";

/** Socket type by name. */
export type SocketType = "stream" | "dgram" | "seqpacket";

const TYPES: Record<SocketType, number> = {
  stream: SOCK_STREAM,
  dgram: SOCK_DGRAM,
  seqpacket: SOCK_SEQPACKET,
};

const DOMAINS: Record<SocketAddress["family"], number> = {
  unix: AF_UNIX,
  inet: AF_INET,
  inet6: AF_INET6,
};

/** Options for {@linkcode openSocket}. */
export interface SocketOptions {
  /** Set `O_NONBLOCK` on the new descriptor (default false). */
  nonblocking?: boolean;
}

/** `socket(2)` with `SOCK_CLOEXEC`, for the family of `addr`. */
export function openSocket(
  family: SocketAddress["family"],
  type: SocketType,
  options: SocketOptions = {},
): number {
  return libc.socket(
    DOMAINS[family],
    TYPES[type] | SOCK_CLOEXEC | (options.nonblocking ? SOCK_NONBLOCK : 0),
    0,
  );
}

/** `bind(2)`; a failure names the address. */
export function bind(fd: number, addr: SocketAddress): void {
  const sa = encodeSockaddr(addr);
  call("bind", [fd, sa, sa.length], { detail: formatAddress(addr) });
}

/**
 * `connect(2)`: `true` once connected, `false` while a non-blocking
 * connection is under way (`EINPROGRESS`). Calling it again is safe, as a
 * call interrupted by a signal (`EINTR`, retried) does: POSIX lets that
 * connection go on in the background, so a connection still under way is
 * `false` (`EALREADY`) and one made meanwhile `true` (`EISCONN`).
 */
export function connect(fd: number, addr: SocketAddress): boolean {
  const sa = encodeSockaddr(addr);
  try {
    return call("connect", [fd, sa, sa.length], {
      detail: formatAddress(addr),
      unless: Errno.EINPROGRESS,
    }) !== null;
  } catch (err) {
    const code = (err as SyscallError).code;
    if (code === "EALREADY") return false;
    if (code === "EISCONN") return true;
    throw err;
  }
}

/** `listen(2)`. */
export function listen(fd: number, backlog = 511): void {
  libc.listen(fd, backlog);
}

/**
 * A listening socket bound to `addr` (TCP for inet addresses, a stream Unix
 * socket otherwise), with `SO_REUSEADDR` on TCP like Go's `net.Listen`.
 */
export function listenOn(
  addr: SocketAddress,
  options: SocketOptions & { backlog?: number } = {},
): number {
  const fd = openSocket(addr.family, "stream", options);
  try {
    if (addr.family !== "unix") setIntOption(fd, SO_REUSEADDR, 1);
    bind(fd, addr);
    listen(fd, options.backlog);
    return fd;
  } catch (err) {
    libc.close(fd);
    throw err;
  }
}

/**
 * {@linkcode listenOn}, replacing a Unix socket file that nobody accepts on
 * any more: the file a listener leaves behind when its last holder exits
 * makes a later `bind(2)` fail with `EADDRINUSE`. A path that a live socket
 * serves, or that is not a socket, still fails with `EADDRINUSE`.
 */
export function listenReplacingStale(
  addr: SocketAddress,
  options: SocketOptions & { backlog?: number } = {},
): number {
  try {
    return listenOn(addr, options);
  } catch (err) {
    const path = addr.family === "unix" ? addr.path : undefined;
    const inUse = (err as SyscallError).code === "EADDRINUSE";
    if (path === undefined || !inUse || !isStaleSocketFile(path)) throw err;
    unlink(path);
  }
  return listenOn(addr, options);
}

/** Whether `path` is a Unix socket file that nobody listens on any more. */
function isStaleSocketFile(path: string): boolean {
  return pathIdentity(path)?.kind === "socket" && !unixSocketIsLive(path);
}

/**
 * Whether a socket listens at the Unix path `path`, asked the way a client
 * asks: a non-blocking `connect(2)`, closed at once. The kernel follows the
 * path to the socket itself, whatever spelling the listener bound it with
 * (relative, through a symlink or a bind mount), which `/proc/net/unix`
 * cannot tell. `true` when it accepts or its backlog is full (`EAGAIN`),
 * `false` when nobody listens (`ECONNREFUSED`) or nothing is there
 * (`ENOENT`). Never waits. The listener sees a connection that closes at
 * once.
 *
 * @example
 * ```ts ignore
 * if (!unixSocketIsLive("/run/app/app.sock")) unlink("/run/app/app.sock");
 * ```
 */
export function unixSocketIsLive(path: string): boolean {
  const probe = openSocket("unix", "stream", { nonblocking: true });
  try {
    connect(probe, { family: "unix", path });
    return true;
  } catch (err) {
    const code = (err as SyscallError).code;
    if (code === "EAGAIN") return true;
    if (code === "ECONNREFUSED" || code === "ENOENT") return false;
    throw err;
  } finally {
    libc.close(probe);
  }
}

/** A UDP (or Unix datagram) socket bound to `addr`. */
export function bindDatagram(addr: SocketAddress): number {
  const fd = openSocket(addr.family, "dgram");
  try {
    bind(fd, addr);
    return fd;
  } catch (err) {
    libc.close(fd);
    throw err;
  }
}

/**
 * `accept4(2)` with `SOCK_CLOEXEC`. Returns `null` when a non-blocking
 * listener has nothing pending (`EAGAIN`).
 */
export function accept(fd: number, options: SocketOptions = {}): number | null {
  const flags = SOCK_CLOEXEC | (options.nonblocking ? SOCK_NONBLOCK : 0);
  return call("accept4", [fd, null, null, flags], { unless: Errno.EAGAIN });
}

function readAddress(
  fn: "getsockname" | "getpeername",
  fd: number,
): SocketAddress {
  const buf = new Uint8Array(SOCKADDR_STORAGE_SIZE);
  const len = new Uint32Array([buf.length]);
  libc[fn](fd, buf, new Uint8Array(len.buffer));
  return decodeSockaddr(buf, len[0]);
}

/** `shutdown(2)`; never use it on a listener shared with another process. */
export function shutdown(fd: number, how: number): void {
  libc.shutdown(fd, how);
}

/** The address `fd` is bound to. */
export function localAddress(fd: number): SocketAddress {
  return readAddress("getsockname", fd);
}

/** `getsockopt(SOL_SOCKET, option)` as an int. */
export function getIntOption(fd: number, option: number): number {
  const value = new Int32Array(1);
  const len = new Uint32Array([4]);
  libc.getsockopt(
    fd,
    SOL_SOCKET,
    option,
    new Uint8Array(value.buffer),
    new Uint8Array(len.buffer),
  );
  return value[0];
}

/** `setsockopt(SOL_SOCKET, option)` with an int. */
export function setIntOption(fd: number, option: number, value: number): void {
  const buf = new Int32Array([value]);
  libc.setsockopt(fd, SOL_SOCKET, option, new Uint8Array(buf.buffer), 4);
}

/** What kind of socket `fd` is. */
export interface SocketInfo {
  /** The address family. */
  family: SocketAddress["family"];
  /** The socket type. */
  type: SocketType;
  /** Whether `listen(2)` was called on it. */
  listening: boolean;
}

/** Domain, type and listening state of `fd` (`SO_DOMAIN`, `SO_TYPE`, `SO_ACCEPTCONN`). */
export function socketInfo(fd: number): SocketInfo {
  const domain = getIntOption(fd, SO_DOMAIN);
  const type = getIntOption(fd, SO_TYPE);
  const family = (Object.keys(DOMAINS) as SocketAddress["family"][]).find((k) =>
    DOMAINS[k] === domain
  );
  const typeName = (Object.keys(TYPES) as SocketType[]).find((k) =>
    TYPES[k] === type
  );
  if (!family || !typeName) {
    throw new TypeError(
      `descriptor ${fd} is a socket of unsupported domain ${domain} / type ${type}`,
    );
  }
  return {
    family,
    type: typeName,
    listening: getIntOption(fd, SO_ACCEPTCONN) === 1,
  };
}

/** Credentials of the process at the other end of a Unix socket. */
export interface PeerCredentials {
  /** Process id of the peer when it connected. */
  pid: number;
  /** Its user id. */
  uid: number;
  /** Its group id. */
  gid: number;
}

/** `SO_PEERCRED`. */
export function peerCredentials(fd: number): PeerCredentials {
  const buf = new Uint8Array(UCRED.size);
  const len = new Uint32Array([UCRED.size]);
  libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, buf, new Uint8Array(len.buffer));
  const view = new DataView(buf.buffer);
  return {
    pid: view.getInt32(UCRED.pid, true),
    uid: view.getUint32(UCRED.uid, true),
    gid: view.getUint32(UCRED.gid, true),
  };
}

/** A connected pair of Unix sockets (`socketpair(2)`). */
export function socketPair(type: SocketType = "stream"): [number, number] {
  const fds = new Int32Array(2);
  libc.socketpair(
    AF_UNIX,
    TYPES[type] | SOCK_CLOEXEC,
    0,
    new Uint8Array(fds.buffer),
  );
  return [fds[0], fds[1]];
}
