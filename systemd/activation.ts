/**
 * Socket activation (`sd_listen_fds(3)`): the descriptors a service manager
 * passes as 3, 4, … with `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`.
 *
 * @module
 */
import { getpid, setCloseOnExec } from "../ffi/fd.ts";
import { deleteEnv, getEnv } from "../ffi/runtime.ts";
import { TablerollError } from "../src/errors.ts";

/** The first descriptor a service manager passes (`SD_LISTEN_FDS_START`). */
export const LISTEN_FDS_START = 3;

const VARIABLES = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] as const;

/** A descriptor passed by socket activation. */
export interface ActivatedFd {
  /** Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`), `"unknown"` without one. */
  name: string;
  /** Its number: 3, 4, … */
  fd: number;
}

/** Whether this process took its activated descriptors already. */
let taken = false;

/**
 * Takes the descriptors passed to this process by socket activation, as
 * `sd_listen_fds_with_names(1, …)` does: only if `LISTEN_PID` is this
 * process's pid, and once; marks them close-on-exec; and removes the three
 * variables from the environment in every case, so that no child process
 * mistakes them for its own (on Deno that takes `--allow-env`: without it
 * they stay, and a child's own pid tells it they are not its). Returns an
 * empty list without activation.
 *
 * Throws {@linkcode ActivationError} when the variables contradict each
 * other or two descriptors share a name (give each socket its own
 * `FileDescriptorName=`).
 *
 * @example
 * ```ts ignore
 * for (const { name, fd } of takeActivatedFds()) console.log(name, fd);
 * ```
 */
export function takeActivatedFds(): ActivatedFd[] {
  const [pid, count, names] = VARIABLES.map(getEnv);
  VARIABLES.forEach(deleteEnv);
  if (taken || pid === undefined || Number(pid) !== getpid()) return [];
  if (!/^\d+$/.test(count ?? "")) {
    throw new TablerollError(
      "activation",
      `LISTEN_FDS=${count} is not a number of descriptors: the service manager's socket activation is broken`,
    );
  }
  const n = Number(count);
  const named = names === undefined
    ? Array<string>(n).fill("unknown")
    : names.split(":");
  if (named.length !== n) {
    throw new TablerollError(
      "activation",
      `LISTEN_FDNAMES names ${named.length} descriptors but LISTEN_FDS passes ${n}: ` +
        "name every socket of the unit (FileDescriptorName=) or none",
    );
  }
  const duplicate = named.find((name, i) => named.indexOf(name) !== i);
  if (duplicate !== undefined) {
    throw new TablerollError(
      "activation",
      `two activated descriptors are named ${
        JSON.stringify(duplicate)
      }: give each socket its own FileDescriptorName= so fds.listen() can tell them apart`,
    );
  }
  taken = true;
  return named.map((name, i) => {
    const fd = LISTEN_FDS_START + i;
    setCloseOnExec(fd, true);
    return { name, fd };
  });
}
