/**
 * Parsers for the text of `/proc/locks`, `/proc/net/unix` and
 * `/proc/<pid>/stat`, and the decoding of a `st_dev`. No I/O: the library
 * reads these files through FFI (`proc.ts`), the command line with
 * `node:fs`, and both hand the text here.
 *
 * @example Who holds which lock
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { parseLocks } from "./procfs_text.ts";
 *
 * const [lock] = parseLocks("1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF\n");
 * strictEqual(lock.pid, 1234);
 * strictEqual(lock.major, 0xfd);
 * ```
 *
 * @module
 */

/** One entry of `/proc/locks`. */
export interface FileLock {
  /** `FLOCK` (what tableroll takes), `POSIX`, `OFDLCK`… */
  type: string;
  /** `WRITE` (exclusive) or `READ`. */
  access: string;
  /** The process that took it. */
  pid: number;
  /** The locked file's device and inode. */
  major: number;
  /** See {@linkcode FileLock.major}. */
  minor: number;
  /** See {@linkcode FileLock.major}. */
  inode: bigint;
  /** Whether this process is waiting for the lock rather than holding it. */
  waiting: boolean;
}

/** A Unix socket from `/proc/net/unix`. */
export interface UnixSocket {
  /** The socket's inode (the number in `socket:[N]`). */
  inode: number;
  /** The bound path as the binding process gave it (`@…` when abstract, `""` when unbound). */
  path: string;
  /** Whether it is a listening socket. */
  listening: boolean;
  /** Whether it is a connected stream (an accepted connection carries its listener's path). */
  connected: boolean;
}

/** What `/proc/<pid>/stat` says of a process. */
export interface ProcessStat {
  /** Its pid. */
  pid: number;
  /** The executable's name, as the kernel keeps it (15 characters at most). */
  command: string;
  /** One letter: `R`, `S`, `D`, `T`… or `Z` for a process that died but was not yet reaped. */
  state: string;
  /** When it started, in clock ticks since boot: with the pid, it names one process for good. */
  startTime: bigint;
}

const SO_ACCEPTCON = 0x10000;
const SS_CONNECTED = 3;

/**
 * The entries of `/proc/locks` text; lines that are not locks on a
 * `major:minor:inode` file are skipped.
 *
 * @example A holder and a process waiting for the same lock
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import { parseLocks } from "./procfs_text.ts";
 *
 * const locks = parseLocks(
 *   "1: FLOCK  ADVISORY  WRITE 10 08:01:42 0 EOF\n" +
 *     "1: -> FLOCK  ADVISORY  WRITE 11 08:01:42 0 EOF\n",
 * );
 * deepStrictEqual(locks.map((l) => [l.pid, l.waiting]), [[10, false], [11, true]]);
 * ```
 */
export function parseLocks(text: string): FileLock[] {
  return text.split("\n").flatMap((line) => {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after the number.
    const m = line.match(
      /^\d+:\s+(->\s+)?(\S+)\s+\S+\s+(\S+)\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/,
    );
    if (!m) return [];
    return [{
      type: m[2],
      access: m[3],
      pid: Number(m[4]),
      major: parseInt(m[5], 16),
      minor: parseInt(m[6], 16),
      inode: BigInt(m[7]),
      waiting: m[1] !== undefined,
    }];
  });
}

/**
 * The sockets of `/proc/net/unix` text; the header line is skipped.
 *
 * @example An abstract listening socket
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import { parseUnixSockets } from "./procfs_text.ts";
 *
 * deepStrictEqual(
 *   parseUnixSockets(
 *     "0000000000000000: 00000002 00000000 00010000 0001 01 4242 @bus\n",
 *   ),
 *   [{ inode: 4242, path: "@bus", listening: true, connected: false }],
 * );
 * ```
 */
export function parseUnixSockets(text: string): UnixSocket[] {
  return text.split("\n").flatMap((line) => {
    // Num RefCount Protocol Flags Type St Inode [Path]; the path may hold spaces.
    const m = line.match(
      /^\s*\S+:\s+\S+\s+\S+\s+([0-9A-Fa-f]+)\s+\S+\s+([0-9A-Fa-f]+)\s+(\d+)(?: (.*))?$/,
    );
    if (!m) return [];
    return [{
      inode: Number(m[3]),
      path: m[4] ?? "",
      listening: (parseInt(m[1], 16) & SO_ACCEPTCON) !== 0,
      connected: parseInt(m[2], 16) === SS_CONNECTED,
    }];
  });
}

/**
 * The fields of a `/proc/<pid>/stat` line that tableroll uses.
 *
 * @example A command name holding a space and a parenthesis
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { parseProcessStat } from "./procfs_text.ts";
 *
 * const stat = parseProcessStat(
 *   "7 (a) b) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0",
 * );
 * strictEqual(stat.command, "a) b");
 * strictEqual(stat.startTime, 99n);
 * ```
 */
export function parseProcessStat(text: string): ProcessStat {
  // "pid (comm) state ppid …": comm may hold spaces and parentheses.
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  return {
    pid: Number(text.slice(0, open)),
    command: text.slice(open + 1, close),
    state: fields[0],
    startTime: BigInt(fields[19]),
  };
}

/**
 * The major and minor numbers of a `st_dev`, decoded as glibc's
 * `major()`/`minor()` do (`/proc/locks` prints them in hex).
 *
 * @example
 * ```ts
 * import { deepStrictEqual } from "node:assert";
 * import { deviceNumbers } from "./procfs_text.ts";
 *
 * deepStrictEqual(deviceNumbers(0xfd01n), [0xfd, 0x01]);
 * ```
 */
export function deviceNumbers(dev: number | bigint): [number, number] {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return [Number(major), Number(minor)];
}
