/**
 * The table shared between {@linkcode waitFor} and its waiter thread.
 * Each slot is `[fd, seq, events]`; `fd` is -1 when the slot is free.
 *
 * @module
 */

/** Descriptors that can be waited for at once. */
export const SLOTS = 256;
/** Int32 fields per slot. */
export const SLOT_FIELDS = 3;

/** What the waiter thread is started with. */
export interface WaiterInit {
  table: SharedArrayBuffer;
  wakeFd: number;
}
