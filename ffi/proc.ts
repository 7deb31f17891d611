/**
 * The descriptor table and processes as `/proc` shows them, read through
 * FFI (Deno's own file APIs would need `--allow-all` for `/proc`), and the
 * parsing of its texts (`/proc/locks`, fdinfo, `stat`, `/proc/net/*`).
 *
 * @module
 */
import { Errno, UnsupportedSyscallError } from "./errors.ts";
import { close, openFile } from "./fd.ts";
import {
  backend,
  call,
  cString,
  layout,
  libc,
  O_RDONLY,
  SYS_PIDFD_OPEN,
} from "./libc.ts";

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
 * import { parseLocks } from "./proc.ts";
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
 * import { parseUnixSockets } from "./proc.ts";
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
 * import { parseProcessStat } from "./proc.ts";
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
 * import { deviceNumbers } from "./proc.ts";
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

const decoder = new TextDecoder();

/** The room {@linkcode scratch} keeps between reads. */
const SCRATCH_BYTES = 16384;

/**
 * The one buffer every read of `/proc` here goes through: the reads are
 * synchronous, so one at a time. Fresh buffers per read (64 KiB a read of
 * `/proc/locks`, 32 KiB a directory listing) made each refused control
 * connection allocate about 200 KiB outside the JavaScript heap, which the
 * runtimes' collectors and malloc left in the process for good.
 */
let scratch = new Uint8Array(SCRATCH_BYTES);

/**
 * The open descriptors of this process (or of process `pid`), ascending.
 * Throws a `SyscallError` if another process's cannot be listed (another
 * user's, not dumpable, gone).
 */
export function listFds(pid: number | "self" = "self"): number[] {
  const dir = openFile(`/proc/${pid}/fd`, O_RDONLY | layout().O_DIRECTORY);
  const fds: number[] = [];
  try {
    const view = new DataView(scratch.buffer);
    for (;;) {
      const n = libc.getdents64(dir, scratch, scratch.length);
      if (n === 0) break;
      // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
      for (let off = 0; off < n; off += view.getUint16(off + 16, true)) {
        const fd = decimalName(scratch, off + 19);
        if (fd !== null) fds.push(fd);
      }
    }
  } finally {
    close(dir);
  }
  return fds.filter((fd) => pid !== "self" || fd !== dir).sort((a, b) => a - b);
}

/** The number a NUL-terminated directory entry name at `buf[at]` spells, or `null` for `.`, `..` and the like. */
function decimalName(buf: Uint8Array, at: number): number | null {
  let value = 0;
  let i = at;
  for (; buf[i] !== 0; i++) {
    const digit = buf[i] - 0x30;
    if (digit < 0 || digit > 9) return null;
    value = value * 10 + digit;
  }
  return i === at ? null : value;
}

/**
 * `pidfd_open(2)`: a descriptor that refers to process `pid` and becomes
 * readable when it exits (wait for it with `waitReadable`). Close-on-exec.
 * Throws {@linkcode UnsupportedSyscallError} on a kernel older than 5.3 and a
 * `SyscallError` with code `ESRCH` when no such process exists.
 *
 * @example Learning when a process ends
 * ```ts ignore
 * const pidfd = pidfdOpen(pid);
 * await waitReadable(pidfd);
 * close(pidfd);
 * ```
 */
export function pidfdOpen(pid: number): number {
  const fd = call("syscall", [SYS_PIDFD_OPEN, pid, 0], {
    syscall: "pidfd_open",
    detail: `pid ${pid}`,
    unless: Errno.ENOSYS,
  });
  if (fd !== null) return fd;
  throw new UnsupportedSyscallError(
    "pidfd_open",
    "Linux 5.3",
    backend().strerror(Errno.ENOSYS),
  );
}

/** The target of `/proc/self/fd/<fd>`, e.g. `socket:[1234]` or `anon_inode:[eventpoll]`. */
export function fdTarget(fd: number): string {
  const buf = new Uint8Array(4096);
  const path = `/proc/self/fd/${fd}`;
  const n = call("readlink", [cString(path), buf, buf.length], {
    detail: path,
  })!;
  return decoder.decode(buf.subarray(0, n));
}

/** The text of `/proc/self/fdinfo/<fd>`. */
export function fdInfo(fd: number): string {
  return readProcFile(`/proc/self/fdinfo/${fd}`);
}

/**
 * The argument vector this process was started with, `argv[0]` included, as
 * `/proc/self/cmdline` has it: for `deno run -A app.ts` it starts with the
 * `deno` that was executed, for a compiled program with the path it was
 * started by.
 */
export function commandLine(): string[] {
  return readProcFile("/proc/self/cmdline").replace(/\0$/, "").split("\0");
}

/**
 * Whether this process catches `signal` (a number) with a handler right now,
 * as the `SigCgt` mask of `/proc/self/status` says.
 */
export function catchesSignal(signal: number): boolean {
  const mask = readProcFile("/proc/self/status").match(
    /^SigCgt:\s*([0-9a-f]+)$/m,
  );
  return mask !== null &&
    ((BigInt(`0x${mask[1]}`) >> BigInt(signal - 1)) & 1n) === 1n;
}

/** The text of `/proc/self/stat`: pid, state, start time and the like. */
export function selfStat(): string {
  return readProcFile("/proc/self/stat");
}

function readProcFile(path: string): string {
  const file = openFile(path, O_RDONLY);
  try {
    let length = 0;
    for (;;) {
      const n = libc.read(
        file,
        scratch.subarray(length),
        scratch.length - length,
      );
      if (n === 0) break;
      length += n;
      if (length === scratch.length) scratch = doubled(scratch);
    }
    return decoder.decode(scratch.subarray(0, length));
  } finally {
    close(file);
    // A long /proc/net/unix, say, is not kept.
    if (scratch.length > SCRATCH_BYTES) scratch = new Uint8Array(SCRATCH_BYTES);
  }
}

/** A copy of `buf` in twice the room. */
function doubled(buf: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(2 * buf.length);
  out.set(buf);
  return out;
}

/** One registration of an epoll instance, as `/proc/self/fdinfo` lists it. */
export interface EpollRegistration {
  /** The epoll descriptor. */
  epollFd: number;
  /** The registered descriptor number. */
  targetFd: number;
  /** The event mask. */
  events: number;
  /** The user data, 64 bits. */
  data: bigint;
  /** Inode of the registered file, to tell two epolls' views of one file apart. */
  ino: bigint;
}

/** Every registration of every epoll instance this process has open. */
export function epollRegistrations(): EpollRegistration[] {
  const out: EpollRegistration[] = [];
  for (const fd of listFds()) {
    let target: string;
    try {
      target = fdTarget(fd);
    } catch {
      continue; // closed meanwhile
    }
    if (target !== "anon_inode:[eventpoll]") continue;
    for (const line of fdInfo(fd).split("\n")) {
      const m = line.match(
        /^tfd:\s*(\d+)\s+events:\s*([0-9a-f]+)\s+data:\s*([0-9a-f]+)(?:\s+pos:\s*\d+)?(?:\s+ino:\s*([0-9a-f]+))?/,
      );
      if (!m) continue;
      out.push({
        epollFd: fd,
        targetFd: Number(m[1]),
        events: parseInt(m[2], 16),
        data: BigInt("0x" + m[3]),
        ino: m[4] ? BigInt("0x" + m[4]) : 0n,
      });
    }
  }
  return out;
}

/** `/proc/<pid>/stat` of process `pid`, or `null` if there is none (it died and was reaped). */
export function processStat(pid: number): ProcessStat | null {
  let text: string;
  try {
    text = readProcFile(`/proc/${pid}/stat`);
  } catch (err) {
    // ESRCH: it was reaped between opening the file and reading it.
    const code = (err as { code?: string }).code;
    if (code === "ENOENT" || code === "ESRCH") return null;
    throw err;
  }
  return parseProcessStat(text);
}

/**
 * The pid of the process holding an exclusive `flock` on the file `dev`/`ino`
 * (as {@linkcode fileIdentity} reports them), from `/proc/locks`; `null` if
 * nobody holds one.
 */
export function flockHolder(dev: bigint, ino: bigint): number | null {
  return exclusiveFlockOn(parseLocks(readProcFile("/proc/locks")), dev, ino);
}

/**
 * Like {@linkcode flockHolder}, but looks only at the descriptors of process
 * `pid` (`/proc/<pid>/fdinfo`, which print their locks as `/proc/locks`
 * does): the pid holding an exclusive `flock` on `dev`/`ino` through one of
 * them, or `null`; `undefined` when the process has more than
 * `maxDescriptors` (not looked at). It never waits as a first read of
 * `/proc/locks` can (10–15 ms here: that read takes a global lock whose
 * first taking waits for an RCU grace period). Throws a `SyscallError` if
 * that process's descriptors cannot be listed.
 */
export function flockHolderAmong(
  pid: number,
  dev: bigint,
  ino: bigint,
  maxDescriptors: number,
): number | null | undefined {
  const fds = listFds(pid);
  if (fds.length > maxDescriptors) return undefined;
  // Newest first: a lock taken by the program comes after the runtime's own.
  for (const fd of fds.reverse()) {
    let info: string;
    try {
      info = readProcFile(`/proc/${pid}/fdinfo/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (!info.includes("lock:")) continue;
    const holder = exclusiveFlockOn(fdinfoLocks(info), dev, ino);
    if (holder !== null) return holder;
  }
  return null;
}

/** The pid holding an exclusive `flock` on `dev`/`ino` among `locks`, or `null`. */
function exclusiveFlockOn(
  locks: FileLock[],
  dev: bigint,
  ino: bigint,
): number | null {
  const [major, minor] = deviceNumbers(dev);
  const lock = locks.find((l) =>
    isExclusiveFlock(l) && l.major === major && l.minor === minor &&
    l.inode === ino
  );
  return lock ? lock.pid : null;
}

/**
 * The pid of the process holding an exclusive `flock` through descriptor
 * `fd` of this process, from `/proc/self/fdinfo/<fd>`; `null` if none. The
 * kernel prints these lines as it prints `/proc/locks` (after `lock:`), but
 * without the global lock behind a first read of `/proc/locks` taking
 * 10–15 ms here.
 */
export function flockHolderThrough(fd: number): number | null {
  const lock = fdinfoLocks(fdInfo(fd)).find(isExclusiveFlock);
  return lock ? lock.pid : null;
}

/** Whether `lock` is a held (not awaited) exclusive `flock`, as tableroll takes. */
function isExclusiveFlock(lock: FileLock): boolean {
  return !lock.waiting && lock.type === "FLOCK" && lock.access === "WRITE";
}

/** The locks an fdinfo text lists: its `lock:` lines, as `/proc/locks` prints them. */
function fdinfoLocks(text: string): FileLock[] {
  return parseLocks(text.replace(/^lock:\s*/gm, ""));
}
