/**
 * What Linux's `/proc` says about sockets, locks and processes, read as
 * plain files: the kernel's socket tables, the lock table and each
 * process's descriptor links. Nothing here connects to anything.
 *
 * @module
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import {
  type FileLock,
  parseLocks,
  parseProcessStat,
  parseUnixSockets,
  type ProcessStat,
  type UnixSocket,
} from "../ffi/proc.ts";

export { deviceNumbers } from "../ffi/proc.ts";
export type { FileLock, UnixSocket };

/** A TCP or UDP socket from `/proc/net/{tcp,tcp6,udp,udp6}`. */
export interface InetSocket {
  /** The socket's inode. */
  inode: number;
  /** `tcp` or `udp`. */
  protocol: "tcp" | "udp";
  /** The local address, `HOST:PORT` (`[HOST]:PORT` for IPv6). */
  address: string;
  /** A listening TCP socket, or a bound, unconnected UDP socket. */
  listening: boolean;
}

/** A process as `/proc/<pid>/stat` describes it. */
export interface ProcessInfo extends Pick<ProcessStat, "pid" | "command"> {
  /** How long it has run, in milliseconds. */
  ageMs: number;
  /** When it started, in clock ticks since boot (with the pid, names one process for good). */
  start: number;
}

const TCP_LISTEN = 0x0a;
const UDP_UNCONNECTED = 0x07;
/** `/proc/<pid>/stat` counts in USER_HZ, which is 100 on every Linux ABI. */
const USER_HZ = 100;

/** Every Unix socket of this network namespace. */
export function unixSockets(): UnixSocket[] {
  return parseUnixSockets(readText("/proc/net/unix"));
}

/** Every TCP and UDP socket (IPv4 and IPv6) of this network namespace, by inode. */
export function inetSockets(): Map<number, InetSocket> {
  const out = new Map<number, InetSocket>();
  for (const protocol of ["tcp", "udp"] as const) {
    for (const file of [protocol, `${protocol}6`]) {
      for (const line of readLines(`/proc/net/${file}`).slice(1)) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10) continue;
        const state = parseInt(f[3], 16);
        out.set(Number(f[9]), {
          inode: Number(f[9]),
          protocol,
          address: decodeInetAddress(f[1]),
          listening: state ===
            (protocol === "tcp" ? TCP_LISTEN : UDP_UNCONNECTED),
        });
      }
    }
  }
  return out;
}

/**
 * `/proc/net/tcp`'s `HEX:PORT`: the address is in network order but printed
 * as 32-bit words in host (little-endian) order.
 */
export function decodeInetAddress(hex: string): string {
  const [addr, port] = hex.split(":");
  const bytes: number[] = [];
  for (let w = 0; w < addr.length; w += 8) {
    const word = addr.slice(w, w + 8);
    for (let b = 6; b >= 0; b -= 2) {
      bytes.push(parseInt(word.slice(b, b + 2), 16));
    }
  }
  const portNumber = parseInt(port, 16);
  if (bytes.length === 4) return `${bytes.join(".")}:${portNumber}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  }
  return `[${compressIpv6(groups)}]:${portNumber}`;
}

/** The longest run of zero groups becomes `::`, as in RFC 5952. */
function compressIpv6(groups: string[]): string {
  let best = { start: -1, length: 0 };
  for (let i = 0; i < groups.length;) {
    let j = i;
    while (j < groups.length && groups[j] === "0") j++;
    if (j - i > best.length && j - i > 1) best = { start: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.start < 0) return groups.join(":");
  const head = groups.slice(0, best.start).join(":");
  const tail = groups.slice(best.start + best.length).join(":");
  return `${head}::${tail}`;
}

/** The kernel's table of file locks. */
export function fileLocks(): FileLock[] {
  return parseLocks(readText("/proc/locks"));
}

/**
 * The socket inodes each process holds, from the `socket:[N]` links in
 * `/proc/<pid>/fd`. Processes whose descriptors cannot be read (other
 * users', or gone meanwhile) are left out.
 */
export function socketHolders(): Map<number, number[]> {
  const holders = new Map<number, number[]>();
  for (const pid of pids()) {
    for (const inode of socketsOf(pid)) {
      const list = holders.get(inode) ?? [];
      if (!list.includes(pid)) list.push(pid);
      holders.set(inode, list);
    }
  }
  return holders;
}

/** The socket inodes process `pid` holds (none when it cannot be read). */
export function socketsOf(pid: number): number[] {
  const dir = `/proc/${pid}/fd`;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    try {
      const m = readlinkSync(`${dir}/${name}`).match(/^socket:\[(\d+)\]$/);
      return m ? [Number(m[1])] : [];
    } catch {
      return []; // closed meanwhile
    }
  });
}

/** Every process id in `/proc`. */
export function pids(): number[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(Number);
}

/** The process `pid`, or `null` if it does not exist or is a zombie. */
export function processInfo(pid: number): ProcessInfo | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const { command, state, startTime } = parseProcessStat(stat);
  if (state === "Z" || state === "X") return null;
  const start = Number(startTime);
  const uptimeSeconds = Number(
    readFileSync("/proc/uptime", "utf8").split(" ")[0],
  );
  return {
    pid,
    command,
    ageMs: Math.max(
      0,
      Math.round(uptimeSeconds * 1000 - start * (1000 / USER_HZ)),
    ),
    start,
  };
}

/** Whether process `pid` has a handler for signal number `signo` (`SigCgt` in its status). */
export function catchesSignal(pid: number, signo: number): boolean {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const mask = status.match(/^SigCgt:\s*([0-9a-f]+)$/m)?.[1];
    return mask !== undefined &&
      ((BigInt("0x" + mask) >> BigInt(signo - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** The current directory of process `pid`, or `null` when it cannot be read. */
export function processCwd(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return null;
  }
}

function readLines(path: string): string[] {
  return readText(path).split("\n").filter((l) => l !== "");
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}
