/**
 * Files and descriptors: open, read, write, close, flock, fcntl, dup3, pipes,
 * memfds and fstat.
 *
 * @module
 */
import {
  call,
  cString,
  EFD_CLOEXEC,
  F_DUPFD_CLOEXEC,
  F_GETFL,
  F_SETFD,
  F_SETFL,
  FD_CLOEXEC,
  layout,
  libc,
  LOCK_EX,
  LOCK_NB,
  LOCK_SH,
  LOCK_UN,
  MFD_CLOEXEC,
  O_CLOEXEC,
  O_CREAT,
  O_NONBLOCK,
  O_PATH,
  O_TRUNC,
  O_WRONLY,
  POLLFD,
  S_IFDIR,
  S_IFIFO,
  S_IFMT,
  S_IFREG,
  S_IFSOCK,
} from "./libc.ts";
import { Errno, SyscallError } from "./errors.ts";
import { forgetDescriptor } from "./wait.ts";

/** `open(2)`; `O_CLOEXEC` is always added. */
export function openFile(path: string, flags: number, mode = 0o644): number {
  return call("open", [cString(path), flags | O_CLOEXEC, mode], {
    detail: path,
  })!;
}

/**
 * `close(2)`; waits pending on `fd` resolve with `POLLNVAL` first. Never
 * retried: on Linux the descriptor is gone even after `EINTR`.
 */
export function close(fd: number): void {
  forgetDescriptor(fd);
  libc.close(fd);
}

/** One `read(2)` of up to `max` bytes; `null` if a non-blocking descriptor has nothing. */
export function read(fd: number, max: number): Uint8Array | null {
  const buf = new Uint8Array(Math.max(1, max));
  const n = call("read", [fd, buf, max], { unless: Errno.EAGAIN });
  return n === null ? null : buf.subarray(0, n);
}

/** One `write(2)`; returns the bytes written, or `null` if it would block. */
export function write(fd: number, data: Uint8Array): number | null {
  return call("write", [fd, data, data.length], { unless: Errno.EAGAIN });
}

/** Writes all of `data` to a blocking descriptor. */
export function writeAll(fd: number, data: Uint8Array): void {
  for (let off = 0; off < data.length;) {
    const n = write(fd, data.subarray(off));
    if (n === null) {
      throw new SyscallError(
        "write",
        Errno.EAGAIN,
        "the descriptor is non-blocking",
      );
    }
    off += n;
  }
}

/** `unlink(2)`; a missing file is not an error. Returns whether a file was removed. */
export function unlink(path: string): boolean {
  return call("unlink", [cString(path)], {
    detail: path,
    unless: Errno.ENOENT,
  }) !== null;
}

/** `rename(2)`: atomically replaces `to` with `from`. */
export function rename(from: string, to: string): void {
  call("rename", [cString(from), cString(to)], { detail: `${from} -> ${to}` });
}

/**
 * Replaces `path` with `text` through a temporary file in the same directory
 * and `rename(2)`: a reader sees the old or the new content, never a part.
 *
 * @example
 * ```ts ignore
 * writeFileAtomically("/run/hello/hello.pid", "4711\n", 0o644);
 * ```
 */
export function writeFileAtomically(
  path: string,
  text: string,
  mode: number,
): void {
  const temporary = `${path}.${getpid()}.tmp`;
  const fd = openFile(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode);
  try {
    writeAll(fd, new TextEncoder().encode(text));
  } finally {
    close(fd);
  }
  try {
    rename(temporary, path);
  } catch (err) {
    unlink(temporary);
    throw err;
  }
}

/** Lock modes of {@linkcode flock}. */
export type LockMode = "exclusive" | "shared" | "unlock";

/**
 * `flock(2)`. With `nonblocking`, returns `false` instead of waiting when
 * another open file description holds a conflicting lock.
 */
export function flock(
  fd: number,
  mode: LockMode,
  options: { nonblocking?: boolean } = {},
): boolean {
  const op =
    (mode === "exclusive" ? LOCK_EX : mode === "shared" ? LOCK_SH : LOCK_UN) |
    (options.nonblocking ? LOCK_NB : 0);
  return call("flock", [fd, op], {
    unless: options.nonblocking ? Errno.EAGAIN : undefined,
  }) !== null;
}

/** Sets or clears `O_NONBLOCK`. */
export function setNonBlocking(fd: number, on: boolean): void {
  const flags = libc.fcntl(fd, F_GETFL, 0);
  libc.fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK);
}

/** Whether `O_NONBLOCK` is set. */
export function isNonBlocking(fd: number): boolean {
  return (libc.fcntl(fd, F_GETFL, 0) & O_NONBLOCK) !== 0;
}

/** Sets or clears `FD_CLOEXEC`. */
export function setCloseOnExec(fd: number, on: boolean): void {
  libc.fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

/** `fcntl(F_DUPFD_CLOEXEC)`: a new descriptor for the same open file. */
export function dup(fd: number, minFd = 0): number {
  return libc.fcntl(fd, F_DUPFD_CLOEXEC, minFd);
}

/** `dup3(2)`: makes `newFd` refer to `oldFd`'s file, closing what `newFd` was. */
export function dup3(oldFd: number, newFd: number, cloexec = true): void {
  libc.dup3(oldFd, newFd, cloexec ? O_CLOEXEC : 0);
}

/** `pipe2(2)` with `O_CLOEXEC`: `[readEnd, writeEnd]`. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  libc.pipe2(new Uint8Array(fds.buffer), O_CLOEXEC);
  return [fds[0], fds[1]];
}

/** `memfd_create(2)` with `MFD_CLOEXEC`. */
export function memfd(name: string): number {
  return libc.memfd_create(cString(name), MFD_CLOEXEC);
}

/** `eventfd(2)` with `EFD_CLOEXEC` plus `flags`. */
export function eventfd(flags = 0): number {
  return libc.eventfd(0, EFD_CLOEXEC | flags);
}

/** The process id (`getpid(2)`). */
export function getpid(): number {
  return libc.getpid();
}

/** The real user id (`getuid(2)`). */
export function getuid(): number {
  return libc.getuid();
}

/** What kind of file a descriptor refers to. */
export type FileKind = "socket" | "file" | "fifo" | "directory" | "other";

/** Identity, kind and owner of the file behind a descriptor (`fstat(2)`). */
export interface FileIdentity {
  /** The device the file lives on. */
  dev: bigint;
  /** The inode number on that device. */
  ino: bigint;
  /** What kind of file it is. */
  kind: FileKind;
  /** Owner's user id. */
  uid: number;
  /** Permission bits (`mode & 0o7777`). */
  permissions: number;
}

/** `fstat(2)`: device, inode, kind, owner and permissions. Two descriptors with equal `dev`/`ino` are the same file. */
export function fileIdentity(fd: number): FileIdentity {
  const buf = new Uint8Array(layout().stat.size);
  libc.fstat(fd, buf);
  const view = new DataView(buf.buffer);
  const mode = view.getUint32(layout().stat.mode, true);
  const fmt = mode & S_IFMT;
  const kind: FileKind = fmt === S_IFSOCK
    ? "socket"
    : fmt === S_IFREG
    ? "file"
    : fmt === S_IFIFO
    ? "fifo"
    : fmt === S_IFDIR
    ? "directory"
    : "other";
  return {
    dev: view.getBigUint64(layout().stat.dev, true),
    ino: view.getBigUint64(layout().stat.ino, true),
    kind,
    uid: view.getUint32(layout().stat.uid, true),
    permissions: mode & 0o7777,
  };
}

/**
 * {@linkcode fileIdentity} of the file at `path` itself (a final symbolic
 * link is not followed, and reported as kind `"other"`), or `null` if there is
 * none. Works for any kind of file, sockets included.
 */
export function pathIdentity(path: string): FileIdentity | null {
  const r = call(
    "open",
    [cString(path), O_PATH | layout().O_NOFOLLOW | O_CLOEXEC, 0],
    { detail: path, unless: Errno.ENOENT },
  );
  if (r === null) return null;
  try {
    return fileIdentity(r);
  } finally {
    close(r);
  }
}

/**
 * `poll(2)` of one descriptor with a zero timeout: the `revents` ready right
 * now for `events` (`POLLIN`, `POLLOUT`), 0 if none.
 */
export function readyNow(fd: number, events: number): number {
  const pollfd = new Uint8Array(POLLFD.size);
  const view = new DataView(pollfd.buffer);
  view.setInt32(POLLFD.fd, fd, true);
  view.setInt16(POLLFD.events, events, true);
  libc.poll(pollfd, 1, 0);
  return view.getUint16(POLLFD.revents, true);
}
