/**
 * The successor's side of a handover: connecting to the owner's control
 * socket, receiving its descriptors (inside `create()`), and asking it to
 * step down (inside `ready()`). Loaded only by a process that has a
 * predecessor.
 *
 * @module
 */
import { close } from "../ffi/fd.ts";
import {
  abortReason,
  checkOwnerPeer,
  checkOwnFile,
  connectOwner,
  controlSocketPath,
} from "./coordination.ts";
import { ControlConn } from "./control_conn.ts";
import { isTablerollError, TablerollError } from "./errors.ts";
import {
  checkSteppingDown,
  decodeMetadata,
  type DescriptorMeta,
  encodeReady,
  LEGACY_READY_BYTE,
  MAX_FD_MESSAGE_BYTES,
  MAX_HANDSHAKE_BLOB_BYTES,
  PROTOCOL_VERSION,
} from "./protocol.ts";
import { diesWithin, forget, observe, type ProcessRef } from "./process_ref.ts";
import type { UpgraderCore } from "./upgrader.ts";

/** How long a peer that hung up gets to be seen dead in `/proc`. */
const DEATH_GRACE_MS = 500;

/** Whether `process` is dead or dies within {@linkcode DEATH_GRACE_MS}. */
function hasDied(process: ProcessRef | null): Promise<boolean> {
  return process === null
    ? Promise.resolve(true)
    : diesWithin(process, DEATH_GRACE_MS);
}

/** ` (pid N)`, for messages. */
function pidOf(process: ProcessRef | null): string {
  return process ? ` (pid ${process.pid})` : "";
}

/**
 * The owner this process took the descriptors of, until `ready()` asked it
 * to step down; {@linkcode joinOwner} makes one.
 */
export class Predecessor {
  /** Its id. */
  readonly id: string;
  /** Its pid, from the control connection's credentials. */
  readonly pid: number;
  readonly #conn: ControlConn;
  readonly #version: number;
  /** Its process (`null` if it was dead already), to tell its death from a refusal. */
  readonly #process: ProcessRef | null;

  constructor(
    id: string,
    pid: number,
    conn: ControlConn,
    version: number,
    process: ProcessRef | null,
  ) {
    this.id = id;
    this.pid = pid;
    this.#conn = conn;
    this.#version = version;
    this.#process = process;
  }

  /**
   * Tells the predecessor this process is ready and waits until it steps
   * down; also returns when it died after handing over (this process holds
   * its sockets and the lock, so it takes over instead of leaving nobody
   * serving). Throws, with the predecessor still the owner, when it refuses.
   */
  async askToStepDown(core: UpgraderCore): Promise<void> {
    const signal = AbortSignal.any([
      core.stopping,
      AbortSignal.timeout(core.upgradeTimeout),
    ]);
    try {
      if (this.#version === 0) {
        // A version-0 owner expects the bare legacy byte and answers nothing.
        await this.#conn.writeAll(new Uint8Array([LEGACY_READY_BYTE]), signal);
        return;
      }
      await this.#conn.writeAll(encodeReady(), signal);
      checkSteppingDown(
        await this.#conn.readBlob(signal, MAX_HANDSHAKE_BLOB_BYTES),
      );
    } catch (err) {
      if (signal.aborted) {
        throw abortReason(signal, "waiting for the owner to step down");
      }
      if (!isTablerollError(err, "peer-closed")) throw err;
      const owner = `owner ${this.id}${pidOf(this.#process)}`;
      if (!await hasDied(this.#process)) {
        throw new TablerollError(
          "peer-closed",
          `${owner} closed the connection instead of stepping down: its upgrade ` +
            "timeout ran out before ready() or it is stopping; it stays the owner, so exit and start again",
          { cause: err },
        );
      }
      core.events.logger.warn(
        `tableroll: ${owner} died before stepping down; taking over`,
      );
    }
  }

  /**
   * Closes the connection and lets go of the process. Called once this
   * process recorded itself as owner: the predecessor takes the hang-up as
   * the sign to look at the record.
   */
  release(): void {
    this.#conn.close();
    forget(this.#process);
  }
}

/**
 * Connects to the control socket of `owner`, the id recorded in `<dir>/pid`,
 * and receives its descriptors into the store. Returns the predecessor to
 * ask to step down, or `null` when there is none after all: it is gone, or
 * it died on the way (the store then keeps what arrived). `signal` bounds
 * the connection and the transfer, as the upgrade timeout does.
 */
export async function joinOwner(
  core: UpgraderCore,
  owner: string,
  signal?: AbortSignal,
): Promise<Predecessor | null> {
  const path = controlSocketPath(core.dir, owner);
  checkOwnFile(path, "socket");
  // An owner that stalls mid-transfer must not hold this process forever.
  const transfer = AbortSignal.any([
    AbortSignal.timeout(core.upgradeTimeout),
    ...(signal ? [signal] : []),
  ]);
  const fd = await connectOwner(path, transfer);
  if (fd === null) {
    core.events.logger.warn(
      `tableroll: owner ${owner} is gone; starting without a predecessor`,
    );
    return null;
  }
  let pid: number;
  let process: ProcessRef | null;
  let conn: ControlConn;
  try {
    pid = checkOwnerPeer(fd, path).pid;
    process = observe(pid);
  } catch (err) {
    close(fd);
    throw err;
  }
  try {
    conn = new ControlConn(fd);
  } catch (err) {
    close(fd);
    forget(process);
    throw err;
  }
  let version: number | null;
  try {
    version = await receive(core, conn, owner, process, transfer);
  } catch (err) {
    conn.close();
    forget(process);
    throw err;
  }
  if (version === null) {
    conn.close();
    forget(process);
    return null;
  }
  return new Predecessor(owner, pid, conn, version, process);
}

/**
 * Receives the descriptors of `owner` into the store and returns its
 * protocol version; `null` if it died on the way, in which case the store
 * keeps what arrived.
 */
async function receive(
  core: UpgraderCore,
  conn: ControlConn,
  owner: string,
  process: ProcessRef | null,
  signal: AbortSignal,
): Promise<number | null> {
  const what = `receiving descriptors from ${owner}`;
  const started = performance.now();
  let entries: DescriptorMeta[] = [];
  let version = 0;
  const fds: number[] = [];
  try {
    ({ version, entries } = decodeMetadata(await conn.readBlob(signal)));
    if (version > PROTOCOL_VERSION) {
      throw new TablerollError(
        "protocol",
        `owner ${owner} speaks protocol version ${version}; this library speaks ${PROTOCOL_VERSION}`,
      );
    }
    while (fds.length < entries.length) {
      const message = await conn.readFdMessage(
        MAX_FD_MESSAGE_BYTES,
        entries.length - fds.length,
        signal,
      );
      if (message.fds.length === 0) {
        throw new TablerollError(
          "protocol",
          `owner ${owner} sent a descriptor message without a descriptor`,
        );
      }
      fds.push(...message.fds);
    }
  } catch (err) {
    const closed = isTablerollError(err, "peer-closed");
    if (closed && await hasDied(process)) {
      inherit(core, entries.slice(0, fds.length), fds);
      core.events.logger.warn(
        `tableroll: owner ${owner}${
          pidOf(process)
        } died while handing over; starting with the ${fds.length} of ` +
          `${entries.length} descriptors it sent, the others are created anew`,
      );
      return null;
    }
    fds.forEach(close);
    if (closed) {
      throw new TablerollError(
        "peer-closed",
        `owner ${owner}${
          pidOf(process)
        } closed the connection while ${what}: it refused this process ` +
          "(its log says why: it could not check it, say), is stopping, or has just " +
          "handed over to another process; retry later",
        { cause: err },
      );
    }
    throw signal.aborted ? abortReason(signal, what) : err;
  }
  inherit(core, entries, fds);
  core.events.emit({
    type: "inherited",
    from: owner,
    count: entries.length,
    durationMs: performance.now() - started,
  }, `inherited ${entries.length} descriptors from ${owner}`);
  return version;
}

/** Stores inherited descriptors; if that fails, they are closed. */
function inherit(
  core: UpgraderCore,
  entries: readonly DescriptorMeta[],
  fds: readonly number[],
): void {
  try {
    core.store.inherit(entries, fds);
  } catch (err) {
    fds.forEach(close);
    throw err;
  }
}
