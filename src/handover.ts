/**
 * The end of a handover, seen from the process that stepped down: it is
 * complete only once the successor has recorded itself as owner in
 * `<dir>/pid`. A successor that dies or gives up before that leaves the old
 * owner in charge again. Nothing here is on the wire; it reads the lock and
 * the record, as any process may.
 *
 * @module
 */
import {
  type LockFile,
  lockHolder,
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
  const holdsLock = lockHolder(lock) === successor.pid;
  if (holdsLock && isAlive(successor)) return "pending";
  const record = readOwnerRecord(`${dir}/${PID_FILE}`);
  if (record !== "" && record !== selfId) return "complete";
  // A process killed holding the lock loses it a moment after it is dead.
  return holdsLock ? "pending" : "abandoned";
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
