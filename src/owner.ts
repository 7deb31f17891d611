/**
 * The owner's side of a handover: admitting a successor on the control
 * socket, handing it the descriptors, learning that it recorded itself, and
 * the rollback window after. Loaded by `ready()`.
 *
 * Every piece of it that runs in the background goes through
 * `inBackground`, whose failure handler leaves the owner serving and
 * admitting the next successor.
 *
 * @module
 */
import { close, getuid } from "../ffi/fd.ts";
import { accept, peerCredentials } from "../ffi/socket.ts";
import { delay, waitReadable } from "../ffi/wait.ts";
import {
  abortReason,
  holdsLock,
  lockHolder,
  PID_FILE,
  readOwnerRecord,
  sleep,
} from "./coordination.ts";
import { ControlConn } from "./control_conn.ts";
import { asTablerollError, TablerollError } from "./errors.ts";
import { describe, inBackground } from "./events.ts";
import {
  handoverStanding,
  reclaimOwnership,
  recordedOwnerGone,
} from "./handover.ts";
import {
  exited,
  forget,
  isAlive,
  observe,
  type ProcessRef,
} from "./process_ref.ts";
import {
  decodeReadyVersion,
  describeDescriptor,
  encodeMetadata,
  encodeSteppingDown,
  LEGACY_READY_BYTE,
  MAX_HANDSHAKE_BLOB_BYTES,
  PROTOCOL_VERSION,
  READY_BYTE,
} from "./protocol.ts";
import { RefusalLog } from "./refusal_log.ts";
import type { UpgraderCore } from "./upgrader.ts";

/** The first wait after accepting on the control socket failed; it doubles up to the maximum. */
const ACCEPT_RETRY_MS = 100;
const MAX_ACCEPT_RETRY_MS = 5_000;

/**
 * How long an owner that stepped down waits for its successor to hang up
 * before it looks at the standing anyway (a live successor that neither
 * records itself nor hangs up).
 */
const HANG_UP_WAIT_MS = 250;

const encoder = new TextEncoder();

/** An owner's handovers, one at a time, for the life of its upgrader. */
export class Owner {
  readonly #core: UpgraderCore;
  readonly #refusals: RefusalLog;
  /** When the current handover began. */
  #handoverStartedAt = 0;
  /** When the latest successor took over, for the `rolled-back` event. */
  #upgradedAt = 0;
  /** The successor this process stepped down for, until it records itself as owner or goes away. */
  #steppingDownFor: ProcessRef | undefined;

  constructor(core: UpgraderCore) {
    this.#core = core;
    this.#refusals = new RefusalLog(core.events.logger, core.stopping);
  }

  get #logger() {
    return this.#core.events.logger;
  }

  /**
   * Accepts on the control socket until the upgrader stops: each connection
   * is admitted as the successor or refused at once. Errors of `accept`
   * (`EMFILE`) are logged and retried after a growing pause.
   */
  async acceptLoop(): Promise<void> {
    const core = this.#core;
    for (let backoff = ACCEPT_RETRY_MS; core.state !== "stopped";) {
      try {
        await waitReadable(core.controlFd, {
          exclusive: true,
          ref: false,
          signal: core.stopping,
        });
        for (
          let fd = accept(core.controlFd, { nonblocking: true });
          fd !== null;
          fd = accept(core.controlFd, { nonblocking: true })
        ) {
          this.#onSuccessor(fd);
        }
        backoff = ACCEPT_RETRY_MS;
      } catch (err) {
        if (core.stopping.aborted) return;
        this.#logger.error(
          `tableroll: accepting on the control socket failed: ${
            describe(err)
          }; trying again in ${backoff} ms`,
        );
        await delay(backoff, core.stopping).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_ACCEPT_RETRY_MS);
      }
    }
  }

  /** Lets go of the successor it watches; the upgrader stopped. */
  stop(): void {
    forget(this.#steppingDownFor);
  }

  /**
   * A connection on the control socket: the successor is checked, and the
   * handover runs in the background; a connection that cannot be admitted,
   * or checked, is closed at once, so that its process fails now and frees
   * the lock for the next one.
   */
  #onSuccessor(fd: number): void {
    let successor: ProcessRef | null = null;
    try {
      successor = this.#admit(fd);
    } catch (err) {
      this.#logger.warn(
        `tableroll: refused a successor it cannot check: ${describe(err)}`,
      );
    }
    if (successor === null) {
      close(fd);
      return;
    }
    const pid = successor.pid;
    this.#handoverStartedAt = performance.now();
    this.#core.moveTo(
      "handing-over",
      { type: "handover-started", successorPid: pid },
      `handing over to pid ${pid}`,
    );
    inBackground(
      this.#logger,
      `handing over to pid ${pid}`,
      () => this.#handOver(fd, successor),
      (err) => this.#recover(successor, err),
    );
  }

  /**
   * Whether the process behind the control connection `fd` may take over:
   * this process must be the owner, and the peer must run as the same user
   * and hold the lock, as a successor does from before it connects until it
   * is the owner. Returns its process, or `null` after logging why not;
   * throws what keeps it from checking (no descriptor left, say).
   */
  #admit(fd: number): ProcessRef | null {
    const core = this.#core;
    if (core.state !== "owner") this.#settleHandover();
    if (core.state !== "owner") {
      this.#logger.debug(
        `tableroll: refused a connection in state ${core.state}`,
      );
      return null;
    }
    let uid: number, pid: number;
    try {
      ({ uid, pid } = peerCredentials(fd));
    } catch (err) {
      throw new Error(
        `refused a connection whose credentials cannot be read: ${
          describe(err)
        }`,
        { cause: err },
      );
    }
    if (uid !== getuid()) {
      this.#refusals.refused(
        pid,
        () =>
          `tableroll: refused pid ${pid} of uid ${uid}: only the same user may take over`,
      );
      return null;
    }
    try {
      const lockFile = core.lockFile;
      if (lockFile && !holdsLock(lockFile, pid)) {
        this.#refusals.refused(pid, () => {
          const holder = lockHolder(lockFile);
          return `tableroll: refused pid ${pid}: only the process holding the lock on ${core.dir}/pid may take over, and ${
            holder === null ? "nobody holds it" : `pid ${holder} does`
          }`;
        });
        return null;
      }
      const successor = observe(pid);
      if (successor === null) {
        this.#logger.debug(`tableroll: refused pid ${pid}: it is gone`);
      }
      return successor;
    } catch (err) {
      throw new Error(`pid ${pid}: ${describe(err)}`, { cause: err });
    }
  }

  /**
   * Hands the descriptors to `successor` over the connection `fd`, then
   * waits for it to record itself as owner. Every failure before this
   * process stepped down leaves it the owner.
   */
  async #handOver(fd: number, successor: ProcessRef): Promise<void> {
    const core = this.#core;
    const pid = successor.pid;
    const signal = AbortSignal.any([
      core.stopping,
      AbortSignal.timeout(core.upgradeTimeout),
    ]);
    let conn: ControlConn | undefined;
    try {
      conn = new ControlConn(fd);
      const { meta, fds } = core.store.snapshot();
      await conn.writeAll(encodeMetadata(meta), signal);
      for (let i = 0; i < fds.length; i++) {
        await conn.sendFd(
          encoder.encode(describeDescriptor(meta[i])),
          fds[i],
          signal,
        );
      }
      const [first] = await conn.readExact(1, signal);
      if (first === READY_BYTE) {
        const version = decodeReadyVersion(
          await conn.readBlob(signal, MAX_HANDSHAKE_BLOB_BYTES),
        );
        if (version !== PROTOCOL_VERSION) {
          throw new TablerollError(
            "protocol",
            `successor speaks protocol version ${version}, not ${PROTOCOL_VERSION}`,
          );
        }
        await conn.writeAll(encodeSteppingDown(), signal);
      } else if (first !== LEGACY_READY_BYTE) {
        throw new TablerollError(
          "protocol",
          `successor sent 0x${first.toString(16)} instead of the ready byte`,
        );
      }
    } catch (err) {
      if (conn) conn.close();
      else close(fd);
      const reason = signal.aborted
        ? abortReason(signal, `waiting for pid ${pid} to be ready`)
        : err;
      this.#recover(successor, reason);
      return;
    }
    this.#logger.info(
      `tableroll: stepped down for pid ${pid}; waiting for it to record itself as owner`,
    );
    this.#steppingDownFor = successor;
    try {
      await this.#awaitRecord(successor, conn);
    } finally {
      conn.close();
    }
  }

  /**
   * After a handover to `successor` failed or broke off: before this process
   * stepped down, it is the owner again; after, it keeps looking for the
   * successor's record, the only thing that can settle the handover.
   */
  #recover(successor: ProcessRef, reason: unknown): void {
    if (this.#steppingDownFor === successor) {
      inBackground(
        this.#logger,
        `waiting for pid ${successor.pid} to record itself as owner`,
        () => this.#awaitRecord(successor),
        (err) => this.#recover(successor, err),
      );
      return;
    }
    forget(successor);
    if (this.#core.state !== "handing-over") return; // stopped meanwhile
    this.#handoverFailed(
      successor.pid,
      reason,
      `handover to pid ${successor.pid} failed, still the owner`,
    );
  }

  /**
   * Waits until the handover to `successor`, for which this process stepped
   * down, is settled (see {@linkcode Owner.#settleHandover}). A successor of
   * this library hangs up `conn` once it recorded itself (a Go one just
   * before, a dead one at its death): that is waited for, and the standing
   * is looked at then; after it, or without `conn`, by polls. Files that
   * cannot be read now (no descriptor left) are read again later.
   */
  async #awaitRecord(
    successor: ProcessRef,
    conn?: ControlConn,
  ): Promise<void> {
    const stopping = this.#core.stopping;
    let unreadable = false;
    let connected = conn !== undefined;
    for (let delay = 1; this.#steppingDownFor === successor;) {
      try {
        if (connected) {
          connected = !await conn!.hungUp(HANG_UP_WAIT_MS, stopping);
        } else {
          await sleep(delay, stopping, "stepping down");
        }
      } catch {
        return; // stopped
      }
      try {
        if (this.#settleHandover()) return;
        delay = Math.min(delay * 2, 50);
      } catch (err) {
        if (!unreadable) {
          this.#logger.warn(
            `tableroll: cannot tell yet whether pid ${successor.pid} recorded itself as owner: ${
              describe(err)
            }; looking again`,
          );
          unreadable = true;
        }
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  /**
   * After stepping down: checks whether the successor has recorded itself
   * as owner (the handover is complete: this process is `upgraded`) or went
   * away before that (this process is the owner again). Returns whether it
   * is settled; throws, before anything changed, what keeps it from looking.
   */
  #settleHandover(): boolean {
    const core = this.#core;
    const successor = this.#steppingDownFor;
    if (successor === undefined || core.state !== "handing-over") return true;
    const standing = core.lockFile
      ? handoverStanding(core.dir, core.id, core.lockFile, successor)
      : "complete"; // without /proc/locks, stepping down is all one can know
    if (standing === "pending") return false;
    if (standing === "abandoned") {
      // If the lock is busy, look again shortly.
      return this.#resume(
        successor,
        [],
        `pid ${successor.pid} went away before recording itself as owner`,
      );
    }
    this.#steppingDownFor = undefined;
    this.#upgradedAt = performance.now();
    core.moveTo("upgraded", {
      type: "upgraded",
      successorPid: successor.pid,
      durationMs: this.#upgradedAt - this.#handoverStartedAt,
    }, `pid ${successor.pid} took over; draining`);
    if (core.rollbackWindow > 0) {
      inBackground(
        this.#logger,
        `standing by for pid ${successor.pid}`,
        () => this.#standBy(successor),
        // Without a way to watch it, the takeover stands.
        () => {
          forget(successor);
          core.final();
        },
      );
    } else {
      forget(successor);
      core.final();
    }
    return true;
  }

  /**
   * The rollback window: waits for `successor` to die; if it does within
   * the window while still the recorded owner, this process resumes,
   * otherwise the takeover is final.
   */
  async #standBy(successor: ProcessRef): Promise<void> {
    const core = this.#core;
    this.#logger.info(
      `tableroll: standing by for ${core.rollbackWindow} ms in case pid ${successor.pid} dies`,
    );
    const window = new AbortController();
    // This timer keeps the process alive for the window.
    const timer = setTimeout(() => window.abort(), core.rollbackWindow);
    const watching = AbortSignal.any([window.signal, core.stopping]);
    try {
      // The id the successor recorded, while it certainly still is the owner.
      const id = await this.#retryWhile(
        watching,
        () => readOwnerRecord(`${core.dir}/${PID_FILE}`),
      );
      try {
        await exited(successor, watching);
      } catch {
        // A successor that died just as the window ended still counts.
        if (core.state !== "upgraded" || isAlive(successor)) {
          if (core.state === "upgraded") {
            this.#logger.info(
              `tableroll: rollback window over; pid ${successor.pid} keeps the service`,
            );
          }
          return;
        }
      }
      const why =
        `pid ${successor.pid} (${id}) died within the rollback window while still the recorded owner`;
      const resumed = await this.#retryWhile(
        watching,
        async () =>
          core.state === "upgraded" &&
          await recordedOwnerGone(core.dir, id) &&
          this.#resume(successor, [id], why),
      );
      if (!resumed && core.state === "upgraded") {
        this.#logger.info(
          `tableroll: pid ${successor.pid} died, but another process is taking over from it; finishing the drain`,
        );
      }
    } finally {
      clearTimeout(timer);
      forget(successor);
      // Unless this process took the service back, the takeover stands.
      if (core.state === "upgraded") core.final();
    }
  }

  /**
   * `attempt()`, tried again every 50 ms while it throws (no descriptor
   * left, say) and `signal` has not aborted; the last failure is thrown.
   */
  async #retryWhile<T>(
    signal: AbortSignal,
    attempt: () => T | Promise<T>,
  ): Promise<T> {
    for (;;) {
      try {
        return await attempt();
      } catch (err) {
        if (signal.aborted) throw err;
        this.#logger.warn(`tableroll: ${describe(err)}; trying again`);
        await delay(50, signal).catch(() => {});
      }
    }
  }

  /**
   * Makes this process the owner again after `successor`, which it stepped
   * down for, went away: the single way back, before the successor recorded
   * itself and within the rollback window after. `replaceable` are the
   * records it may overwrite. Returns `false` if that cannot be done now.
   */
  #resume(
    successor: ProcessRef,
    replaceable: readonly string[],
    why: string,
  ): boolean {
    const core = this.#core;
    if (!reclaimOwnership(core.dir, core.id, replaceable)) return false;
    this.#steppingDownFor = undefined;
    forget(successor);
    if (core.state !== "upgraded") {
      this.#handoverFailed(
        successor.pid,
        new TablerollError(
          "peer-closed",
          `${why}; ${core.id} is the owner again and keeps serving`,
        ),
        "handover failed",
      );
      return true;
    }
    core.moveTo(
      "owner",
      {
        type: "rolled-back",
        successorPid: successor.pid,
        durationMs: performance.now() - this.#upgradedAt,
      },
      `ROLLED BACK: ${why}; ${core.id} is the owner of ${core.dir} again and accepts again`,
    );
    return true;
  }

  /** Back to owner after a failed handover to `pid`, reported with `context`. */
  #handoverFailed(pid: number, reason: unknown, context: string): void {
    const why = describe(reason);
    this.#core.moveTo("owner", {
      type: "handover-failed",
      successorPid: pid,
      reason: why,
      error: asTablerollError(reason),
      durationMs: performance.now() - this.#handoverStartedAt,
    }, `${context}: ${why}`);
  }
}
