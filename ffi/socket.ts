/**
 * Sockets through libc: create, bind, listen, accept, connect, the socket
 * options tableroll inspects, and socket addresses (IPv4, IPv6, Unix paths
 * and abstract names) encoded to and decoded from `struct sockaddr_*`.
 *
 * @module
 */
import { Errno, FfiError, type SyscallError } from "./errors.ts";
import { pathIdentity, unlink } from "./fd.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNIX,
  call,
  libc,
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
  SUN_PATH_SIZE,
  UCRED,
} from "./libc.ts";

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

/**
 * A socket's address: an IPv4 or IPv6 address and port, or a Unix-domain
 * address (a filesystem `path`, an `abstract` name in Linux's namespace
 * without a file, or neither for an unnamed socket).
 */
export type SocketAddress =
  | {
    /** `"inet"` for IPv4, `"inet6"` for IPv6. */
    family: "inet" | "inet6";
    /** The IP literal, e.g. `"127.0.0.1"` or `"::1"` (no brackets). */
    hostname: string;
    /** The port, 0 to let the kernel choose when binding. */
    port: number;
  }
  | {
    /** A Unix-domain address. */
    family: "unix";
    /** A filesystem path, shorter than 108 bytes. */
    path?: string;
    /** A name in the abstract namespace (without the leading NUL). */
    abstract?: string;
  };

/** An IPv4 or IPv6 address and port. */
export type InetAddress = Extract<SocketAddress, { family: "inet" | "inet6" }>;

/** A Unix-domain address. */
export type UnixAddress = Extract<SocketAddress, { family: "unix" }>;

/** An address that cannot be encoded (bad IP literal, path too long…). */
export class InvalidAddressError extends FfiError {
  static {
    this.prototype.name = "InvalidAddressError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `sockaddr` bytes for `addr`; the array's length is the `socklen_t` to pass. */
export function encodeSockaddr(addr: SocketAddress): Uint8Array {
  if (addr.family === "unix") return encodeUnix(addr);
  checkPort(addr.port);
  // sockaddr_in: family, port, address; sockaddr_in6: family, port,
  // flow info, address, scope id.
  const [size, family, ip, ipAt] = addr.family === "inet"
    ? [16, AF_INET, parseIPv4(addr.hostname), 4]
    : [28, AF_INET6, parseIPv6(addr.hostname), 8];
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setUint16(0, family, true);
  view.setUint16(2, addr.port, false);
  buf.set(ip, ipAt);
  return buf;
}

/** Decodes the first `length` bytes of `buf` as a `sockaddr`. */
export function decodeSockaddr(buf: Uint8Array, length: number): SocketAddress {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const family = length >= 2 ? view.getUint16(0, true) : AF_UNIX;
  if (family === AF_INET) {
    return {
      family: "inet",
      hostname: Array.from(buf.subarray(4, 8)).join("."),
      port: view.getUint16(2, false),
    };
  }
  if (family === AF_INET6) {
    return {
      family: "inet6",
      hostname: formatIPv6(buf.subarray(8, 24)),
      port: view.getUint16(2, false),
    };
  }
  if (family === AF_UNIX) {
    const path = buf.subarray(2, length);
    if (path.length === 0) return { family: "unix" };
    if (path[0] === 0) {
      return { family: "unix", abstract: decoder.decode(path.subarray(1)) };
    }
    const end = path.indexOf(0);
    return {
      family: "unix",
      path: decoder.decode(end < 0 ? path : path.subarray(0, end)),
    };
  }
  throw new InvalidAddressError(`unsupported address family ${family}`);
}

/** Formats an address the way Go's `net.Addr.String()` does (`127.0.0.1:80`, `[::1]:80`, a path). */
export function formatAddress(addr: SocketAddress): string {
  if (addr.family === "unix") {
    return addr.path ??
      (addr.abstract !== undefined ? "@" + addr.abstract : "");
  }
  return addr.family === "inet6"
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

function encodeUnix(addr: UnixAddress): Uint8Array {
  let name: Uint8Array;
  if (addr.abstract !== undefined) {
    name = new Uint8Array(1 + encoder.encode(addr.abstract).length);
    name.set(encoder.encode(addr.abstract), 1);
  } else if (addr.path !== undefined && addr.path !== "") {
    name = encoder.encode(addr.path);
    if (name.includes(0)) {
      throw new InvalidAddressError(
        `Unix socket path contains a NUL byte: ${JSON.stringify(addr.path)}`,
      );
    }
    if (name.length >= SUN_PATH_SIZE) {
      throw new InvalidAddressError(
        `Unix socket path is ${name.length} bytes, longer than the ${
          SUN_PATH_SIZE - 1
        } that fit sun_path: ${addr.path}`,
      );
    }
  } else {
    name = new Uint8Array(0);
  }
  if (name.length > SUN_PATH_SIZE) {
    throw new InvalidAddressError(
      `abstract Unix name is longer than ${SUN_PATH_SIZE - 1} bytes`,
    );
  }
  // Abstract names are length-delimited; paths carry a terminating NUL.
  const trailingNul = addr.abstract === undefined && name.length > 0 ? 1 : 0;
  const buf = new Uint8Array(2 + name.length + trailingNul);
  new DataView(buf.buffer).setUint16(0, AF_UNIX, true);
  buf.set(name, 2);
  return buf;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidAddressError(
      `port must be an integer in 0..65535, not ${port}`,
    );
  }
}

/** Bytes of a dotted-quad IPv4 literal. */
export function parseIPv4(text: string): Uint8Array {
  const parts = text.split(".");
  if (
    parts.length !== 4 ||
    parts.some((p) => !/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255)
  ) {
    throw new InvalidAddressError(
      `not an IPv4 address: ${JSON.stringify(text)}`,
    );
  }
  return new Uint8Array(parts.map(Number));
}

/** Bytes of an IPv6 literal (with optional `::` and embedded IPv4 tail). */
export function parseIPv6(text: string): Uint8Array {
  const invalid = () =>
    new InvalidAddressError(`not an IPv6 address: ${JSON.stringify(text)}`);
  const halves = text.split("::");
  if (halves.length > 2) throw invalid();
  const groups = (s: string): number[] => {
    if (s === "") return [];
    const out: number[] = [];
    const items = s.split(":");
    items.forEach((item, i) => {
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item);
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) {
        out.push(parseInt(item, 16));
      } else {
        throw invalid();
      }
    });
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) throw invalid();
  const all = [
    ...head,
    ...new Array(halves.length === 2 ? missing : 0).fill(0),
    ...tail,
  ];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/**
 * RFC 5952 text of 16 IPv6 bytes: lower case, the longest zero run as `::`,
 * IPv4-mapped addresses with a dotted tail (`::ffff:192.0.2.1`).
 */
export function formatIPv6(bytes: Uint8Array): string {
  if (
    bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff &&
    bytes[11] === 0xff
  ) {
    return `::ffff:${Array.from(bytes.subarray(12, 16)).join(".")}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  let bestStart = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${
    hex(groups.slice(bestStart + bestLen))
  }`;
}
