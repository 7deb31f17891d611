/**
 * Socket addresses: IPv4, IPv6, Unix paths and abstract Unix names, encoded to
 * and decoded from `struct sockaddr_*` bytes.
 *
 * @module
 */
import { FfiError } from "./errors.ts";
import { AF_INET, AF_INET6, AF_UNIX, SUN_PATH_SIZE } from "./platform.ts";

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
