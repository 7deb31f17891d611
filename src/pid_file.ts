/**
 * A PID file for service managers and scripts that follow one (systemd's
 * `PIDFile=`, start-stop-daemon, monit): the owner writes its pid when it
 * becomes the owner, atomically, so a reader sees the old or the new pid,
 * never a partial one.
 *
 * @module
 */
import {
  close,
  getpid,
  O_CREAT,
  O_RDONLY,
  O_TRUNC,
  O_WRONLY,
  openFile,
  read,
  rename,
  unlink,
  writeAll,
} from "../ffi/mod.ts";
import type { LifecycleHooks } from "./lifecycle.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Writes `<pid>\n` to `path` through a temporary file in the same directory
 * and `rename(2)`.
 *
 * @example
 * ```ts ignore
 * writePidFile("/run/hello/hello.pid", 4711);
 * ```
 */
export function writePidFile(path: string, pid: number): void {
  writeAtomically(path, `${pid}\n`, 0o644);
}

/**
 * Replaces `path` with `text` through a temporary file in the same directory
 * and `rename(2)`: a reader sees the old or the new content, never a part.
 */
export function writeAtomically(
  path: string,
  text: string,
  mode: number,
): void {
  const temporary = `${path}.${getpid()}.tmp`;
  const fd = openFile(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode);
  try {
    writeAll(fd, encoder.encode(text));
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

/** The pid recorded in `path`, or `undefined` if there is no such file or no number in it. */
export function readPidFile(path: string): number | undefined {
  let fd: number;
  try {
    fd = openFile(path, O_RDONLY);
  } catch {
    return undefined;
  }
  try {
    const text = decoder.decode(read(fd, 64) ?? new Uint8Array());
    return /^\d+\n?$/.test(text) ? Number(text) : undefined;
  } finally {
    close(fd);
  }
}

/**
 * Keeps `path` naming the owner: written when this process becomes the
 * owner; removed when the owner stops without a successor (a file naming a
 * successor is left alone).
 */
export function pidFileHooks(path: string): LifecycleHooks {
  const pid = getpid();
  return {
    becameOwner: () => writePidFile(path, pid),
    stopped: (wasOwner) => {
      if (wasOwner && readPidFile(path) === pid) unlink(path);
    },
  };
}
