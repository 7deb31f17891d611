/**
 * The end of a handover, seen from the process that stepped down: it is
 * complete only once the successor has recorded itself as owner in
 * `<dir>/pid`. A successor that dies or gives up before that leaves the old
 * owner in charge again. Nothing here is on the wire; it reads the lock and
 * the record, as any process may.
 *
 * @module
 */
import { unixSocketIsLive } from "../ffi/socket.ts";
import { delay } from "../ffi/wait.ts";
import {
  controlSocketPath,
  holdsLock,
  type LockFile,
  OwnerLock,
  PID_FILE,
  readOwnerRecord,
} from "./coordination.ts";
import { isAlive, type ProcessRef } from "./process_ref.ts";

/**
 * Where a handover stands after the owner said it steps down:
 * - `pending`: the successor runs and still holds the lock, so it may yet
 *   record itself;
 * - `complete`: the record names another process: the successor (or one
 *   after it) is the owner;
 * - `abandoned`: the successor died or released the lock, and the record
 *   still names this process or nobody.
 */
export type HandoverStanding = "pending" | "complete" | "abandoned";

/** Where the handover of `selfId` to `successor` stands now. */
export function handoverStanding(
  dir: string,
  selfId: string,
  lock: LockFile,
  successor: ProcessRef,
): HandoverStanding {
  const recorded = () => {
    const record = readOwnerRecord(`${dir}/${PID_FILE}`);
    return record !== "" && record !== selfId;
  };
  // The usual end, seen without looking for the lock.
  if (recorded()) return "complete";
  const locked = holdsLock(lock, successor.pid);
  if (locked && isAlive(successor)) return "pending";
  // The successor records itself before it lets go of the lock: read again.
  if (recorded()) return "complete";
  // A process killed holding the lock loses it a moment after it is dead.
  return locked ? "pending" : "abandoned";
}

/** How long a dead process's control socket may take to close (its last thread closes it). */
const SOCKET_CLOSE_GRACE_MS = 500;

/**
 * Whether the process recorded as owner under `id`, seen dead, is gone
 * while still recorded: `<dir>/pid` names it and nothing listens on its
 * control socket, so nobody serves and nobody can take over from it. A
 * process that handed over to the next one is no longer recorded, so this is
 * `false` then. A multi-threaded process shows dead in `/proc` a moment
 * before its last thread closed its sockets: that moment is waited for.
 */
export async function recordedOwnerGone(
  dir: string,
  id: string,
): Promise<boolean> {
  const socket = controlSocketPath(dir, id);
  for (
    const end = Date.now() + SOCKET_CLOSE_GRACE_MS;
    unixSocketIsLive(socket);
  ) {
    if (Date.now() >= end) return false;
    await delay(5);
  }
  return readOwnerRecord(`${dir}/${PID_FILE}`) === id;
}

/**
 * Makes `selfId` the recorded owner again after a successor went away
 * without taking over. Returns `true` if the record names `selfId` (it did
 * already, or it was empty or one of `replaceable` and the lock was free to
 * rewrite it), `false` if it cannot be done now: another process holds the
 * lock, or the record names a process that took over.
 */
export function reclaimOwnership(
  dir: string,
  selfId: string,
  replaceable: readonly string[] = [],
): boolean {
  const path = `${dir}/${PID_FILE}`;
  if (readOwnerRecord(path) === selfId) return true;
  const lock = OwnerLock.tryAcquire(dir);
  if (lock === null) return false;
  try {
    const record = lock.readOwner();
    if (record === selfId) return true;
    if (record !== "" && !replaceable.includes(record)) return false;
    lock.writeOwner(selfId);
    return true;
  } finally {
    lock.release();
  }
}
