/**
 * The coordination directory: its checks, the control-socket path of each
 * process, the lock and the owner record (`<dir>/pid`), laid out exactly as
 * Go tableroll lays them out.
 *
 * @module
 */
import type { SyscallError } from "../ffi/errors.ts";
import {
  close,
  type FileIdentity,
  fileIdentity,
  flock,
  getuid,
  openFile,
  pathIdentity,
  read,
  unlink,
  writeAll,
} from "../ffi/fd.ts";
import { O_CREAT, O_RDONLY, O_TRUNC, O_WRONLY } from "../ffi/libc.ts";
import {
  flockHolder,
  flockHolderAmong,
  flockHolderThrough,
} from "../ffi/proc.ts";
import {
  connect,
  encodeSockaddr,
  InvalidAddressError,
  listenOn,
  openSocket,
  type PeerCredentials,
  peerCredentials,
  unixSocketIsLive,
} from "../ffi/socket.ts";
import { delay } from "../ffi/wait.ts";
import { isTablerollError, TablerollError } from "./errors.ts";
import { type Logger, silentLogger } from "./events.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The name of the lock file and owner record. */
export const PID_FILE = "pid";
/** The mode Go tableroll creates it with. */
const PID_FILE_MODE = 0o755;

/** `<dir>/<id>.sock`. */
export function controlSocketPath(dir: string, id: string): string {
  return `${dir}/${id}.sock`;
}

/**
 * Rejects ids that would make a bad or over-long control-socket path: empty,
 * containing `/` or NUL, `.`/`..`, or too long for `sun_path`.
 */
export function checkId(dir: string, id: string): void {
  if (id === "" || id === "." || id === ".." || /[\/\0]/.test(id)) {
    throw new TablerollError(
      "bad-id",
      `id ${
        JSON.stringify(id)
      } cannot name a socket file: use a non-empty name without "/" or NUL`,
    );
  }
  try {
    encodeSockaddr({ family: "unix", path: controlSocketPath(dir, id) });
  } catch (err) {
    if (!(err instanceof InvalidAddressError)) throw err;
    throw new TablerollError(
      "bad-id",
      `${err.message}: use a shorter directory or id`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Checks that `dir` exists, is a directory, belongs to this user and that no
 * other user can write it, and that the `pid` file in it, if any, is this
 * user's too. Anyone who can write there can plant a control socket, pose as
 * the owner and hand a successor descriptors of their choosing, or delete the
 * owner's socket and end every later upgrade.
 */
export function checkDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openFile(dir, O_RDONLY);
  } catch (err) {
    const code = (err as SyscallError).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new TablerollError(
        "bad-directory",
        `coordination directory ${dir} does not exist: create it (mode 0700) before starting`,
        { cause: err },
      );
    }
    if (code === "EACCES") {
      throw new TablerollError(
        "bad-directory",
        `coordination directory ${dir} cannot be opened (EACCES): check its permissions and those of its parents`,
        { cause: err },
      );
    }
    throw err; // EMFILE, ENOMEM…: the error says what ran out
  }
  let info: FileIdentity;
  try {
    info = fileIdentity(fd);
  } finally {
    close(fd);
  }
  if (info.kind !== "directory") {
    throw new TablerollError(
      "bad-directory",
      `${dir} is not a directory`,
    );
  }
  const uid = getuid();
  if (info.uid !== uid) {
    throw new TablerollError(
      "bad-directory",
      `coordination directory ${dir} belongs to uid ${info.uid}, not to this process's uid ${uid}: ` +
        "use a directory this user owns (mode 0700)",
    );
  }
  if (info.permissions & WRITABLE_BY_OTHERS) {
    const sticky = info.permissions & STICKY
      ? "; the sticky bit does not help, others can still create files there"
      : "";
    throw new TablerollError(
      "bad-directory",
      `coordination directory ${dir} has mode ${octal(info.permissions)}: ${
        whoElseWrites(info.permissions)
      } can write it and pose as the owner${sticky}; ` +
        `make it writable by this user only: chmod 0700 ${dir}`,
    );
  }
  checkOwnFile(`${dir}/${PID_FILE}`, "file");
}

/** Group- and other-write permission bits. */
const WRITABLE_BY_OTHERS = 0o022;
const STICKY = 0o1000;

function octal(mode: number): string {
  return "0" + mode.toString(8).padStart(3, "0");
}

function whoElseWrites(mode: number): string {
  return mode & 0o002 ? "every user" : "the group";
}

/**
 * Checks that the file at `path`, if there is one, is a `kind` that this user
 * owns and that no other user can write: a file of another user in the
 * coordination directory was planted there.
 */
export function checkOwnFile(path: string, kind: "file" | "socket"): void {
  const info = pathIdentity(path);
  if (info === null) return;
  const uid = getuid();
  if (info.uid !== uid) {
    throw new TablerollError(
      "bad-directory",
      `${path} belongs to uid ${info.uid}, not to this process's uid ${uid}: another user could write ` +
        "the coordination directory; remove the file and make the directory writable by this user only (chmod 0700)",
    );
  }
  if (info.kind !== kind) {
    throw new TablerollError(
      "bad-directory",
      `${path} is not a ${
        kind === "file" ? "regular file" : "socket"
      }: remove it`,
    );
  }
  if (info.permissions & WRITABLE_BY_OTHERS) {
    throw new TablerollError(
      "bad-directory",
      `${path} has mode ${octal(info.permissions)}: ${
        whoElseWrites(info.permissions)
      } can write it; chmod go-w ${path}`,
    );
  }
}

/**
 * Checks, before anything is read from it, that the process serving the
 * owner's control socket `fd` (connected to `path`) runs as this user: a
 * process of another user there is an impostor. Returns its credentials.
 */
export function checkOwnerPeer(fd: number, path: string): PeerCredentials {
  const peer = peerCredentials(fd);
  const uid = getuid();
  if (peer.uid !== uid) {
    throw new TablerollError(
      "untrusted-peer",
      `${path} is served by pid ${peer.pid} of uid ${peer.uid}, not by a process of this uid ${uid}: ` +
        "another user replaced the owner's control socket; nothing was read from it. " +
        "Make the coordination directory writable by this user only (chmod 0700) and restart the service",
    );
  }
  return peer;
}

/**
 * Binds and listens on this process's control socket. A socket file left by
 * a process that died (nobody listens on it) is replaced; one that a live
 * process listens on is an error, since two processes cannot share an id.
 */
export function listenControl(path: string): number {
  try {
    return listenOn({ family: "unix", path }, { nonblocking: true });
  } catch (err) {
    if ((err as SyscallError).code !== "EADDRINUSE") throw err;
  }
  checkOwnFile(path, "socket");
  if (unixSocketIsLive(path)) {
    throw new TablerollError(
      "id-in-use",
      `${path} is served by a live process: another process uses this id; give each process its own`,
    );
  }
  unlink(path);
  return listenOn({ family: "unix", path }, { nonblocking: true });
}

/**
 * Connects to the owner's control socket. Returns `null` when nobody listens
 * on it any more (`ENOENT`, `ECONNREFUSED`: the owner died): the caller then
 * has no predecessor. A live socket whose backlog is full (`EAGAIN`) is
 * tried again until `signal` aborts.
 */
export async function connectOwner(
  path: string,
  signal: AbortSignal,
): Promise<number | null> {
  for (let delay = 5;; delay = Math.min(delay * 2, 100)) {
    const fd = openSocket("unix", "stream", { nonblocking: true });
    try {
      connect(fd, { family: "unix", path });
      return fd;
    } catch (err) {
      close(fd);
      const code = (err as SyscallError).code;
      if (code === "ENOENT" || code === "ECONNREFUSED") return null;
      if (code !== "EAGAIN") throw err;
    }
    await sleep(
      delay,
      signal,
      `connecting to ${path}, whose backlog stays full`,
    );
  }
}

/** Device and inode of `<dir>/pid`, which name its lock in `/proc/locks`. */
export interface LockFile {
  /** The device. */
  dev: bigint;
  /** The inode. */
  ino: bigint;
}

/** The pid of the process holding the lock on `file`, or `null` if it is free. */
export function lockHolder(file: LockFile): number | null {
  return flockHolder(file.dev, file.ino);
}

/** More descriptors than a starting successor has: past this, `/proc/locks` is cheaper. */
const MAX_SCANNED_DESCRIPTORS = 64;

/**
 * Whether process `pid` holds the lock on `file`, looked for among its own
 * descriptors (no wait, as a first read of `/proc/locks` can have), or in
 * `/proc/locks` where its descriptors cannot be read or are too many.
 */
export function holdsLock(file: LockFile, pid: number): boolean {
  let holder: number | null | undefined;
  try {
    holder = flockHolderAmong(
      pid,
      file.dev,
      file.ino,
      MAX_SCANNED_DESCRIPTORS,
    );
  } catch {
    // its descriptors cannot be read: /proc/locks below
  }
  return (holder === undefined ? lockHolder(file) : holder) === pid;
}

/** How often a process waiting for the lock says who holds it. */
const STALL_REPORT_MS = 5_000;

/** The held lock on `<dir>/pid`. */
export class OwnerLock {
  readonly #path: string;
  #fd: number | undefined;
  /** Where the lock lives. */
  readonly file: LockFile;

  private constructor(path: string, fd: number, file: LockFile) {
    this.#path = path;
    this.#fd = fd;
    this.file = file;
  }

  /**
   * Takes the exclusive `flock` on `<dir>/pid`, retrying until `signal`
   * aborts; every few seconds it reports to `logger` which pid holds the
   * lock and for how long this process has waited. The file is created if
   * missing and never deleted: the lock lives on its inode.
   */
  static async acquire(
    dir: string,
    signal?: AbortSignal,
    logger: Logger = silentLogger,
  ): Promise<OwnerLock> {
    const path = `${dir}/${PID_FILE}`;
    // Opened and created exactly as Go tableroll does; a read-only descriptor can hold a flock.
    const fd = openFile(path, O_RDONLY | O_CREAT, PID_FILE_MODE);
    const { dev, ino } = fileIdentity(fd);
    const since = Date.now();
    const stall = () => {
      const holder = lockHolder({ dev, ino });
      const seconds = ((Date.now() - since) / 1000).toFixed(1);
      return holder === null
        ? `the lock on ${path} was busy for ${seconds} s`
        : `pid ${holder} has held the lock on ${path} for at least ${seconds} s`;
    };
    try {
      let reportAt = since + STALL_REPORT_MS / 5;
      for (let delay = 5; !flock(fd, "exclusive", { nonblocking: true });) {
        if (Date.now() >= reportAt) {
          logger.warn(`tableroll: waiting: ${stall()}`);
          reportAt = Date.now() + STALL_REPORT_MS;
        }
        try {
          await sleep(delay, signal, "waiting for the lock");
        } catch (err) {
          if (!isTablerollError(err, "timeout")) throw err;
          throw new TablerollError(
            "timeout",
            `timed out waiting for the lock: ${stall()}; ` +
              "it is taking over or stuck: stop that process if it does not finish",
            { cause: err },
          );
        }
        delay = Math.min(delay * 2, 100);
      }
      return new OwnerLock(path, fd, { dev, ino });
    } catch (err) {
      close(fd);
      throw err;
    }
  }

  /** Takes the lock if it is free right now; `null` if another process holds it. */
  static tryAcquire(dir: string): OwnerLock | null {
    const path = `${dir}/${PID_FILE}`;
    const fd = openFile(path, O_RDONLY | O_CREAT, PID_FILE_MODE);
    try {
      if (flock(fd, "exclusive", { nonblocking: true })) {
        const { dev, ino } = fileIdentity(fd);
        return new OwnerLock(path, fd, { dev, ino });
      }
    } catch (err) {
      close(fd);
      throw err;
    }
    close(fd);
    return null;
  }

  /**
   * Whether the kernel shows this lock as held by process `pid`; where it
   * does not, {@linkcode lockHolder} cannot be relied on.
   */
  shownHeldBy(pid: number): boolean {
    return this.#fd !== undefined && flockHolderThrough(this.#fd) === pid;
  }

  /** The owner id recorded in the file, or `""` if none. */
  readOwner(): string {
    return readOwnerRecord(this.#path);
  }

  /** Records `id` as the owner: raw bytes, no newline, as Go writes it. */
  writeOwner(id: string): void {
    const fd = openFile(
      this.#path,
      O_WRONLY | O_CREAT | O_TRUNC,
      PID_FILE_MODE,
    );
    try {
      writeAll(fd, encoder.encode(id));
    } finally {
      close(fd);
    }
  }

  /** Releases the lock (idempotent). */
  release(): void {
    if (this.#fd === undefined) return;
    close(this.#fd); // closing the last descriptor releases the flock
    this.#fd = undefined;
  }
}

/** The owner id recorded in the file at `path`, or `""` if none; needs no lock. */
export function readOwnerRecord(path: string): string {
  const fd = openFile(path, O_RDONLY);
  try {
    const chunks: number[] = [];
    for (
      let chunk = read(fd, 4096);
      chunk && chunk.length > 0;
      chunk = read(fd, 4096)
    ) {
      chunks.push(...chunk);
    }
    return decoder.decode(new Uint8Array(chunks));
  } finally {
    close(fd);
  }
}

/** Resolves after `ms`; rejects with {@linkcode abortReason} for `what` if `signal` aborts first. */
export function sleep(
  ms: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<void> {
  return delay(ms, signal).catch(() => {
    throw abortReason(signal!, what);
  });
}

/** A timeout abort becomes an {@linkcode UpgradeTimeoutError} naming what was awaited. */
export function abortReason(signal: AbortSignal, what: string): unknown {
  const reason = signal.reason;
  if (reason instanceof DOMException && reason.name === "TimeoutError") {
    return new TablerollError(
      "timeout",
      `timed out ${what}`,
      { cause: reason },
    );
  }
  return reason;
}
