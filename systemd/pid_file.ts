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
  openFile,
  read,
  unlink,
  writeFileAtomically,
} from "../ffi/fd.ts";
import { O_RDONLY } from "../ffi/libc.ts";

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
  writeFileAtomically(path, `${pid}\n`, 0o644);
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
    const text = new TextDecoder().decode(read(fd, 64) ?? new Uint8Array());
    return /^\d+\n?$/.test(text) ? Number(text) : undefined;
  } finally {
    close(fd);
  }
}

/** Removes `path` if it names `pid` (a file naming a successor is left alone). */
export function removePidFile(path: string, pid: number): void {
  if (readPidFile(path) === pid) unlink(path);
}
