/**
 * The waiter thread behind {@linkcode waitFor} (see `wait.ts`): it blocks in
 * `poll(2)` on the descriptors listed in a shared table plus a wake-up eventfd,
 * and posts a message for each one that became ready. It never returns to its
 * own event loop, so it costs nothing while idle.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";
import { backend, libc } from "./libc.ts";
import { POLLFD } from "./platform.ts";
import { SLOT_FIELDS, SLOTS, type WaiterInit } from "./wait_table.ts";

const { table: shared, wakeFd } = workerData as WaiterInit;
const table = new Int32Array(shared);
const reported = new Int32Array(SLOTS).fill(-1);
const pollfds = new Uint8Array(POLLFD.size * (SLOTS + 1));
const view = new DataView(pollfds.buffer);
const drain = new Uint8Array(8);

for (;;) {
  const watched: number[] = [];
  let n = 0;
  const add = (fd: number, events: number) => {
    view.setInt32(n * POLLFD.size + POLLFD.fd, fd, true);
    view.setInt16(n * POLLFD.size + POLLFD.events, events, true);
    view.setInt16(n * POLLFD.size + POLLFD.revents, 0, true);
    n++;
  };
  add(wakeFd, 1);
  for (let slot = 0; slot < SLOTS; slot++) {
    const base = slot * SLOT_FIELDS;
    const fd = Atomics.load(table, base);
    const seq = Atomics.load(table, base + 1);
    if (fd < 0 || reported[slot] === seq) continue;
    watched.push(slot, seq);
    add(fd, Atomics.load(table, base + 2));
  }
  libc.poll(pollfds, n, -1);
  if (view.getInt16(POLLFD.revents, true) !== 0) {
    backend.fn.read(wakeFd, drain, 8);
  }
  for (let i = 0; i < watched.length / 2; i++) {
    const revents = view.getInt16((i + 1) * POLLFD.size + POLLFD.revents, true);
    if (revents === 0) continue;
    const [slot, seq] = [watched[2 * i], watched[2 * i + 1]];
    reported[slot] = seq;
    parentPort!.postMessage([slot, seq, revents]);
  }
}
