/**
 * The upgrader: a process's side of tableroll's handover, as an explicit
 * state machine.
 *
 * ```
 * starting ──ready()──▶ owner ──lock holder connects──▶ handing-over ──recorded──▶ upgraded
 *    │                    ▲ ▲                                 │                        │
 *    │                    │ └── successor failed, died or left ┘                        │
 *    │                    └──── rolled back: the successor died within the window ─────┘
 *    └──────────────── stop() from any state ──────────────────────────▶ stopped
 * ```
 *
 * Every state change goes through one function that checks it against
 * {@linkcode TRANSITIONS}, the diagram as data.
 *
 * `handing-over` lasts from the successor's connection until it has
 * recorded itself as owner in `<dir>/pid` ("recorded"), not merely until
 * this process said it steps down: a successor that dies or gives up before
 * recording leaves this process the owner, serving as before. So `upgraded`,
 * `upgradeComplete` and `signal` all mean "a successor took over".
 *
 * With a `rollbackWindow`, an `upgraded` process keeps its descriptors for
 * that long and watches the successor: if it dies while still the recorded
 * owner, this process takes the service back (the same way as a successor
 * that died before recording) and `rolledBack` resolves. `upgradeComplete`
 * and `signal` are then renewed for the next takeover; `upgradeFinal` and
 * `rolledBack` are renewed when it happens, so they stay readable until then.
 *
 * @module
 */
import {
  accept,
  close,
  delay,
  getEnv,
  getpid,
  getuid,
  peerCredentials,
  unlink,
  waitReadable,
} from "../ffi/mod.ts";
import {
  abortReason,
  checkDirectory,
  checkId,
  checkOwnerPeer,
  checkOwnFile,
  connectOwner,
  controlSocketPath,
  holdsLock,
  listenControl,
  type LockFile,
  lockHolder,
  OwnerLock,
  PID_FILE,
  readOwnerRecord,
  sleep,
} from "./coordination.ts";
import {
  handoverStanding,
  reclaimOwnership,
  recordedOwnerGone,
} from "./handover.ts";
import {
  diesWithin,
  exited,
  forget,
  isAlive,
  observe,
  type ProcessRef,
} from "./process_ref.ts";
import { ControlConn } from "./control_conn.ts";
import { RefusalLog } from "./refusal_log.ts";
import {
  PeerClosedError,
  ProtocolError,
  StoppedError,
  TablerollError,
  UpgradeCompletedError,
  UpgradeInProgressError,
} from "./errors.ts";
import { DescriptorStore, type Fds } from "./fds.ts";

import type { DescriptorMeta } from "./protocol.ts";
import { guardLogger, type Logger, silentLogger } from "./logger.ts";
import { describe, inBackground } from "./background.ts";
import {
  type EventInput,
  EventReporter,
  registerReporter,
  type UpgraderEventListener,
} from "./events.ts";
import { emit, type LifecycleHooks } from "./lifecycle.ts";
import { upgradeMarkerPath } from "./upgrade_marker.ts";
import { notificationHooks, SystemdNotifier } from "./notify.ts";
import { pidFileHooks } from "./pid_file.ts";
import { takeActivatedFds } from "./activation.ts";
import { SelfUpgrade, type UpgradeOptions } from "./self_upgrade.ts";
import {
  checkSteppingDown,
  decodeMetadata,
  decodeReadyVersion,
  describeDescriptor,
  encodeMetadata,
  encodeReady,
  encodeSteppingDown,
  LEGACY_READY_BYTE,
  MAX_FD_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  READY_BYTE,
} from "./protocol.ts";

/** Where an upgrader is in its life. */
export type UpgraderState =
  | "starting"
  | "owner"
  | "handing-over"
  | "upgraded"
  | "stopped";

/**
 * The edges of the diagram above: the states each state may change to. A
 * new state or edge is one more entry here.
 */
const TRANSITIONS: Readonly<Record<UpgraderState, readonly UpgraderState[]>> = {
  starting: ["owner", "stopped"],
  owner: ["handing-over", "stopped"],
  "handing-over": ["upgraded", "owner", "stopped"],
  upgraded: ["owner", "stopped"], // owner: rolled back
  stopped: [],
};

/** The owner this process is taking over from, while it waits for `ready()`. */
interface Predecessor {
  conn: ControlConn;
  version: number;
  owner: string;
  /** Its pid, from the control connection's credentials. */
  pid: number;
  /** Its process (`null` if it was dead already), to tell its death from a refusal. */
  process: ProcessRef | null;
}

/** The first wait after accepting on the control socket failed; it doubles up to the maximum. */
const ACCEPT_RETRY_MS = 100;
const MAX_ACCEPT_RETRY_MS = 5_000;

/**
 * How long an owner that stepped down waits for its successor to hang up
 * before it looks at the standing anyway (a live successor that neither
 * records itself nor hangs up).
 */
const HANG_UP_WAIT_MS = 250;

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

/** Options of {@linkcode Upgrader.create}. */
export interface UpgraderOptions {
  /** This process's id, unique among live processes; names `<dir>/<id>.sock`. Default: the pid. */
  id?: string;
  /** Bounds the wait for the lock and the transfer from the predecessor, like Go's context. */
  signal?: AbortSignal;
  /**
   * Milliseconds a successor gets, from connecting to `ready()`, before this
   * process gives up on it and stays owner; also bounds this process's own
   * `ready()` exchange and the transfer from the predecessor. Default 60 000.
   */
  upgradeTimeout?: number;
  /**
   * Where to report progress: `console`, an `@std/log` logger… Each
   * event below is also logged as a message and a data object. Default:
   * silent.
   */
  logger?: Logger;
  /**
   * Called with each {@linkcode UpgraderEvent}, synchronously, from inside
   * `create()` on (`inherited` happens there): for metrics and audit logs.
   * What it throws is logged, never raised.
   */
  onEvent?: UpgraderEventListener;
  /**
   * Notify the service manager over `$NOTIFY_SOCKET` (`sd_notify(3)`):
   * `MAINPID` and `READY=1` on becoming the owner, `RELOADING=1` when
   * {@linkcode Upgrader.upgrade} starts, `STOPPING=1` when the owner stops.
   * Nothing is sent without `$NOTIFY_SOCKET`. Default true.
   */
  notify?: boolean;
  /** A file this process writes its pid to, atomically, when it becomes the owner. */
  pidFile?: string;
  /**
   * Take the sockets of socket activation (`LISTEN_PID`, `LISTEN_FDS`,
   * `LISTEN_FDNAMES`) as `sd_listen_fds(3)` does; `fds.listen(name)` then
   * returns the passed socket of that name. Default true.
   */
  socketActivation?: boolean;
  /**
   * Milliseconds after a successor took over during which this process
   * stays a warm standby: it keeps its descriptors, and takes the service
   * back if the successor dies while still the recorded owner (see
   * {@linkcode Upgrader.rolledBack}). The process lives that much longer.
   * Default 0: no window.
   */
  rollbackWindow?: number;
}

/**
 * The next takeover: renewed when this process takes the service back, so
 * that the application waits for the next one.
 */
class Takeover {
  /** Aborted when a successor took over. */
  readonly upgraded = new AbortController();
  /** Resolves when a successor took over. */
  readonly complete: Promise<void>;

  constructor() {
    this.complete = new Promise((resolve) =>
      this.upgraded.signal.addEventListener("abort", () => resolve(), {
        once: true,
      })
    );
  }
}

const encoder = new TextEncoder();

/** How a takeover ends: final, or rolled back within the window. */
interface Outcome {
  final: PromiseWithResolvers<void>;
  rolledBack: PromiseWithResolvers<void>;
}

function newOutcome(): Outcome {
  return {
    final: Promise.withResolvers(),
    rolledBack: Promise.withResolvers(),
  };
}

/**
 * Takes over the descriptors of the process that currently owns the
 * coordination directory, if any, and later hands them to the next one.
 *
 * @example A service that can be upgraded by starting a new copy
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/serve";
 *
 * await using upgrader = await Upgrader.create("/run/my-service");
 * const server = serve({ upgrader, name: "web", port: 8080, handler });
 * await upgrader.ready();          // now the owner: the predecessor drains
 * await server.finished;           // a successor took over and we drained
 * ```
 *
 * @example The handover of a plain listener, run in a temporary directory
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { mkdtempSync, rmSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { Upgrader } from "@tableroll/tableroll";
 *
 * const dir = mkdtempSync(join(tmpdir(), "tableroll-example-"));
 * const owner = await Upgrader.create(dir, { id: "v1" });
 * const web = owner.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
 * await owner.ready();
 *
 * const successor = await Upgrader.create(dir, { id: "v2" });
 * const inherited = successor.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
 * strictEqual(inherited.inherited, true);
 * strictEqual(inherited.addr, web.addr); // the same socket, the same port
 * await successor.ready();
 * await owner.upgradeComplete; // the owner drains and exits
 * strictEqual(owner.state, "upgraded");
 *
 * await owner.stop();
 * await successor.stop();
 * rmSync(dir, { recursive: true });
 * ```
 */
export class Upgrader implements AsyncDisposable {
  /** This process's id. */
  readonly id: string;
  /** The coordination directory. */
  readonly dir: string;
  /** The descriptors this process holds and will hand over. */
  readonly fds: Fds;
  readonly #store: DescriptorStore;

  #state: UpgraderState = "starting";
  readonly #logger: Logger;
  readonly #refusals: RefusalLog;
  readonly #events: EventReporter;
  /** When `create()` began, for the `ready` event's duration. */
  readonly #createdAt = performance.now();
  /** When the current handover began. */
  #handoverStartedAt = 0;
  /** When the latest successor took over, for the `rolled-back` event. */
  #upgradedAt = 0;
  readonly #upgradeTimeout: number;
  readonly #controlFd: number;
  #lock: OwnerLock | undefined;
  /** Where the lock lives, if the kernel shows it; set once it was first taken. */
  #lockFile: LockFile | undefined;
  #predecessor: Predecessor | undefined;
  /** The successor this process stepped down for, until it records itself as owner or goes away. */
  #steppingDownFor: ProcessRef | undefined;
  #ready: Promise<void> | undefined;
  readonly #stopping = new AbortController();
  readonly #hooks: LifecycleHooks[] = [];
  readonly #selfUpgrade: SelfUpgrade;
  readonly #rollbackWindow: number;
  #takeover = new Takeover();
  /**
   * How the latest takeover ends; renewed when the next one happens, so that
   * an outcome stays readable until then.
   */
  #outcome = newOutcome();

  private constructor(
    dir: string,
    id: string,
    controlFd: number,
    options: UpgraderOptions,
  ) {
    this.dir = dir;
    this.id = id;
    this.#controlFd = controlFd;
    this.#logger = guardLogger(options.logger ?? silentLogger);
    this.#refusals = new RefusalLog(this.#logger, this.#stopping.signal);
    this.#events = new EventReporter(id, this.#logger, options.onEvent);
    registerReporter(this, this.#events);
    this.#upgradeTimeout = options.upgradeTimeout ?? 60_000;
    this.#rollbackWindow = options.rollbackWindow ?? 0;
    this.#store = new DescriptorStore((action) => this.#checkMutable(action));
    this.fds = this.#store;
    const notifier = options.notify === false
      ? undefined
      : SystemdNotifier.fromEnvironment(getEnv("NOTIFY_SOCKET"), this.#logger);
    this.#selfUpgrade = new SelfUpgrade({
      state: () => this.#state,
      logger: this.#logger,
      notifier,
      timeout: this.#upgradeTimeout,
    });
    this.#hooks.push(this.#selfUpgrade);
    if (notifier) this.#hooks.push(notificationHooks(notifier));
    if (options.pidFile) this.#hooks.push(pidFileHooks(options.pidFile));
  }

  /**
   * Joins the coordination directory `dir` (which must exist and belong to
   * this user): binds `<dir>/<id>.sock`, takes the lock, and receives the
   * current owner's descriptors if there is one. The lock is held until
   * {@linkcode Upgrader.ready} or {@linkcode Upgrader.stop}.
   */
  static async create(
    dir: string,
    options: UpgraderOptions = {},
  ): Promise<Upgrader> {
    const id = options.id ?? String(getpid());
    checkId(dir, id);
    checkDirectory(dir);
    const path = controlSocketPath(dir, id);
    const controlFd = listenControl(path);
    let upgrader: Upgrader;
    try {
      upgrader = new Upgrader(dir, id, controlFd, options);
    } catch (err) {
      close(controlFd);
      unlink(path);
      throw err;
    }
    try {
      await upgrader.#join(options.signal);
      if (options.socketActivation !== false) {
        upgrader.#store.activate(takeActivatedFds());
      }
    } catch (err) {
      await upgrader.stop();
      throw err;
    }
    return upgrader;
  }

  /** The current state. */
  get state(): UpgraderState {
    return this.#state;
  }

  /**
   * Resolves when a successor has taken over: time to stop accepting and
   * drain. After a rollback this is a new promise, for the next takeover.
   */
  get upgradeComplete(): Promise<void> {
    return this.#takeover.complete;
  }

  /**
   * Aborted when a successor has taken over, with an
   * {@linkcode UpgradeCompletedError} as reason: stop timers, loops and
   * background work with it. Servers of the tableroll adapters drain on their
   * own at that moment; passing this signal to their `signal` option is safe
   * (the drain still runs its grace period), but not needed. After a
   * rollback this is a new signal, for the next takeover.
   */
  get signal(): AbortSignal {
    return this.#takeover.upgraded.signal;
  }

  /**
   * Resolves when the takeover is final: the rollback window ended with the
   * successor still serving, or at once after `upgradeComplete` without a
   * window. Time to close the server and exit. Each takeover has its own,
   * readable until the next takeover.
   */
  get upgradeFinal(): Promise<void> {
    return this.#outcome.final.promise;
  }

  /**
   * Resolves when this process took the service back: a successor that had
   * taken over died within the rollback window while still the recorded
   * owner. This process is the owner again (state `owner`), its control
   * socket admits the next successor, and it should accept again (the
   * adapters do so by themselves). Each takeover has its own, readable
   * until the next takeover: read it once `upgradeComplete` resolved.
   *
   * @example Serving again after the new version died
   * ```ts ignore
   * const upgrader = await Upgrader.create(dir, { rollbackWindow: 10_000 });
   * upgrader.rolledBack.then(() => console.error("serving again"));
   * ```
   */
  get rolledBack(): Promise<void> {
    return this.#outcome.rolledBack.promise;
  }

  /**
   * Declares this process ready to serve: closes inherited descriptors that
   * were not claimed (with a warning: claim or listen on every inherited
   * name first; a later `listen` of a closed name throws
   * `ClaimedTooLateError`), tells the predecessor to step down, records this
   * process as the owner and releases the lock. If it fails, the lock is
   * released at once and the upgrader stops; the process should exit.
   */
  ready(): Promise<void> {
    this.#ready ??= this.#becomeOwner();
    return this.#ready;
  }

  /**
   * Stops: closes the control socket and every stored descriptor, releases
   * the lock if held. A predecessor waiting for `ready()` stays the owner.
   */
  stop(): Promise<void> {
    if (this.#state === "stopped") return Promise.resolve();
    const from = this.#state;
    const wasOwner = from === "owner" || from === "handing-over";
    this.#moveTo("stopped", { type: "stopped", from }, `${this.id} stopped`);
    this.#stopping.abort(new StoppedError("continue"));
    // Each step on its own: one that fails must not leave the others undone.
    for (
      const step of [
        () => this.#releasePredecessor(),
        () => forget(this.#steppingDownFor),
        () => this.#lock?.release(),
        () => close(this.#controlFd),
        () => unlink(controlSocketPath(this.dir, this.id)),
        () => unlink(upgradeMarkerPath(this.dir, this.id)),
        () => this.#store.closeAll(),
      ]
    ) {
      try {
        step();
      } catch (err) {
        this.#logger.error(`tableroll: while stopping: ${describe(err)}`);
      }
    }
    this.#emit("stopped", wasOwner);
    return Promise.resolve();
  }

  /**
   * Starts a new copy of this program (same command line, environment and
   * working directory, re-read from disk, in its own session, stdout and
   * stderr shared) and resolves once it has taken over; this process then
   * drains as after any takeover. Rejects, with this process still the
   * owner, with {@linkcode SuccessorFailedError} (it exited; the error
   * carries its status and the tail of its stderr),
   * {@linkcode UpgradeTimeoutError} (it did not take over in time and was
   * killed), {@linkcode UpgradeInProgressError} or {@linkcode NotOwnerError}.
   * Deno needs `--allow-env` for it: the environment is passed on.
   *
   * @example Upgrade on SIGHUP after replacing the program
   * ```ts ignore
   * Deno.addSignalListener("SIGHUP", () => {
   *   upgrader.upgrade().catch((err) => console.error(err.message));
   * });
   * ```
   */
  upgrade(options: UpgradeOptions = {}): Promise<void> {
    return this.#selfUpgrade.run(options);
  }

  /** Calls {@linkcode Upgrader.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #join(signal?: AbortSignal): Promise<void> {
    this.#lock = await OwnerLock.acquire(this.dir, signal, this.#logger);
    this.#lockFile = this.#lock.file;
    // The kernel's own view of this descriptor's lock: cheap, and printed by
    // the same code as /proc/locks, which a first read makes wait 10–15 ms.
    if (!this.#lock.shownHeldBy(getpid())) {
      this.#lockFile = undefined;
      this.#logger.warn(
        `tableroll: the kernel does not show the lock on ${this.dir}/pid; ` +
          "any process of this user that connects will be handed the descriptors",
      );
    }
    const owner = this.#lock.readOwner();
    if (owner === "" || owner === this.id) {
      this.#logger.debug(`tableroll: no predecessor in ${this.dir}`);
      return;
    }
    const path = controlSocketPath(this.dir, owner);
    checkOwnFile(path, "socket");
    // An owner that stalls mid-transfer must not hold this process forever.
    const transfer = AbortSignal.any([
      AbortSignal.timeout(this.#upgradeTimeout),
      ...(signal ? [signal] : []),
    ]);
    const fd = await connectOwner(path, transfer);
    if (fd === null) {
      this.#logger.warn(
        `tableroll: owner ${owner} is gone; starting without a predecessor`,
      );
      return;
    }
    let pid: number;
    let process: ProcessRef | null;
    try {
      pid = checkOwnerPeer(fd, path).pid;
      process = observe(pid);
    } catch (err) {
      close(fd);
      throw err;
    }
    const conn = new ControlConn(fd);
    const predecessor = { conn, version: 0, owner, pid, process };
    try {
      const version = await this.#receive(predecessor, transfer);
      if (version !== null) {
        this.#predecessor = { ...predecessor, version };
        return;
      }
    } catch (err) {
      conn.close();
      forget(process);
      throw err;
    }
    conn.close();
    forget(process);
  }

  /** Closes the connection to the predecessor and lets go of its process. */
  #releasePredecessor(): void {
    this.#predecessor?.conn.close();
    forget(this.#predecessor?.process);
    this.#predecessor = undefined;
  }

  /**
   * Receives the predecessor's descriptors into the store and returns its
   * protocol version; `null` if it died on the way, in which case the store
   * keeps what arrived and this process goes on without a predecessor.
   */
  async #receive(
    { conn, owner, process }: Predecessor,
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
        throw new ProtocolError(
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
          throw new ProtocolError(
            `owner ${owner} sent a descriptor message without a descriptor`,
          );
        }
        fds.push(...message.fds);
      }
    } catch (err) {
      if (err instanceof PeerClosedError && await hasDied(process)) {
        this.#inherit(entries.slice(0, fds.length), fds);
        this.#logger.warn(
          `tableroll: owner ${owner}${
            pidOf(process)
          } died while handing over; starting with the ${fds.length} of ` +
            `${entries.length} descriptors it sent, the others are created anew`,
        );
        return null;
      }
      fds.forEach(close);
      if (err instanceof PeerClosedError) {
        throw new PeerClosedError(
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
    this.#inherit(entries, fds);
    this.#events.emit({
      type: "inherited",
      from: owner,
      count: entries.length,
      durationMs: performance.now() - started,
    }, `inherited ${entries.length} descriptors from ${owner}`);
    return version;
  }

  /** Stores inherited descriptors; if that fails, they are closed. */
  #inherit(entries: readonly DescriptorMeta[], fds: readonly number[]): void {
    try {
      this.#store.inherit(entries, fds);
    } catch (err) {
      fds.forEach(close);
      throw err;
    }
  }

  async #becomeOwner(): Promise<void> {
    if (this.#state !== "starting") this.#checkMutable("become ready");
    const unclaimed = this.#store.closeUnclaimed();
    if (unclaimed.length > 0) {
      this.#logger.warn(
        `tableroll: ready() closed inherited descriptors nothing had claimed: ${
          unclaimed.join(", ")
        }; listen on (or claim) every inherited name before ready(), or the predecessor's connections on it are lost`,
      );
    }
    const predecessor = this.#predecessor;
    try {
      if (predecessor) {
        // While the predecessor still runs: a service manager must hear of
        // the new main process before the old one can exit.
        this.#emit("claimingOwnership", predecessor.pid);
        await this.#askToStepDown(predecessor);
      }
      this.#lock!.writeOwner(this.id);
    } catch (err) {
      if (predecessor) this.#emit("claimFailed", predecessor.pid);
      await this.stop();
      throw err;
    } finally {
      // Closed after the record is written: the predecessor takes the
      // hang-up as the sign to look at it.
      this.#releasePredecessor();
      this.#lock?.release();
      this.#lock = undefined;
    }
    this.#moveTo("owner", {
      type: "ready",
      predecessor: predecessor?.owner ?? null,
      durationMs: performance.now() - this.#createdAt,
    }, `${this.id} owns ${this.dir}`);
    this.#emit("becameOwner");
    this.#acceptSuccessors();
  }

  async #askToStepDown(
    { conn, version, owner, process }: Predecessor,
  ): Promise<void> {
    const signal = AbortSignal.any([
      this.#stopping.signal,
      AbortSignal.timeout(this.#upgradeTimeout),
    ]);
    try {
      if (version === 0) {
        // A version-0 owner expects the bare legacy byte and answers nothing.
        await conn.writeAll(new Uint8Array([LEGACY_READY_BYTE]), signal);
        return;
      }
      await conn.writeAll(encodeReady(), signal);
      checkSteppingDown(await conn.readBlob(signal));
    } catch (err) {
      if (signal.aborted) {
        throw abortReason(signal, "waiting for the owner to step down");
      }
      if (!(err instanceof PeerClosedError)) throw err;
      if (!await hasDied(process)) {
        throw new PeerClosedError(
          `owner ${owner}${
            pidOf(process)
          } closed the connection instead of stepping down: its upgrade ` +
            "timeout ran out before ready() or it is stopping; it stays the owner, so exit and start again",
          { cause: err },
        );
      }
      // The owner died after handing over: this process holds its sockets
      // and the lock, so it takes over instead of leaving nobody serving.
      this.#logger.warn(
        `tableroll: owner ${owner}${
          pidOf(process)
        } died before stepping down; taking over`,
      );
    }
  }

  /**
   * Starts the owner's accept loop in the background: each connection on the
   * control socket is admitted as the successor or refused at once. Should
   * the loop ever end by surprise, it starts again, so that the owner always
   * admits the next successor.
   */
  #acceptSuccessors(): void {
    inBackground(
      "accepting successors on the control socket",
      () => this.#acceptLoop(),
      {
        logger: this.#logger,
        recover: () => {
          if (this.#state !== "stopped") this.#acceptSuccessors();
        },
      },
    );
  }

  async #acceptLoop(): Promise<void> {
    for (let backoff = ACCEPT_RETRY_MS; this.#state !== "stopped";) {
      try {
        await waitReadable(this.#controlFd, {
          exclusive: true,
          ref: false,
          signal: this.#stopping.signal,
        });
        for (let fd = this.#acceptOne(); fd !== null; fd = this.#acceptOne()) {
          this.#onSuccessor(fd);
        }
        backoff = ACCEPT_RETRY_MS;
      } catch (err) {
        if (this.#stopping.signal.aborted) return;
        // EMFILE and the like: keep serving, try again shortly.
        this.#logger.error(
          `tableroll: accepting on the control socket failed: ${
            describe(err)
          }; trying again in ${backoff} ms`,
        );
        await delay(backoff, this.#stopping.signal).catch(() => {});
        backoff = Math.min(backoff * 2, MAX_ACCEPT_RETRY_MS);
      }
    }
  }

  #acceptOne(): number | null {
    return accept(this.#controlFd, { nonblocking: true });
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
    this.#moveTo(
      "handing-over",
      { type: "handover-started", successorPid: pid },
      `handing over to pid ${pid}`,
    );
    this.#emit("handingOver", pid);
    inBackground(
      `handing over to pid ${pid}`,
      () => this.#handOver(fd, successor),
      { logger: this.#logger, recover: (err) => this.#recover(successor, err) },
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
    if (this.#state !== "owner") {
      this.#settleHandover();
    }
    if (this.#state !== "owner") {
      this.#logger.debug(
        `tableroll: refused a connection in state ${this.#state}`,
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
      const lockFile = this.#lockFile;
      if (lockFile && !holdsLock(lockFile, pid)) {
        this.#refusals.refused(pid, () => {
          const holder = lockHolder(lockFile);
          return `tableroll: refused pid ${pid}: only the process holding the lock on ${this.dir}/pid may take over, and ${
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
    const pid = successor.pid;
    const signal = AbortSignal.any([
      this.#stopping.signal,
      AbortSignal.timeout(this.#upgradeTimeout),
    ]);
    let conn: ControlConn | undefined;
    try {
      conn = new ControlConn(fd);
      const { meta, fds } = this.#store.snapshot();
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
        const version = decodeReadyVersion(await conn.readBlob(signal));
        if (version !== PROTOCOL_VERSION) {
          throw new ProtocolError(
            `successor speaks protocol version ${version}, not ${PROTOCOL_VERSION}`,
          );
        }
        await conn.writeAll(encodeSteppingDown(), signal);
      } else if (first !== LEGACY_READY_BYTE) {
        throw new ProtocolError(
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
        `waiting for pid ${successor.pid} to record itself as owner`,
        () => this.#awaitRecord(successor),
        {
          logger: this.#logger,
          recover: (err) => this.#recover(successor, err),
        },
      );
      return;
    }
    forget(successor);
    if (this.#state !== "handing-over") return; // stopped meanwhile
    const pid = successor.pid;
    this.#handoverFailed(
      pid,
      reason,
      `handover to pid ${pid} failed, still the owner`,
    );
    this.#emit("handoverFailed", pid, reason);
  }

  /**
   * Waits until the handover to `successor`, for which this process stepped
   * down, is settled (see {@linkcode Upgrader.#settleHandover}). A successor
   * of this library hangs up `conn` once it recorded itself (a Go one just
   * before, a dead one at its death): that is waited for, and the standing
   * is looked at then; after it, or without `conn`, by polls. Files that
   * cannot be read now (no descriptor left) are read again later.
   */
  async #awaitRecord(
    successor: ProcessRef,
    conn?: ControlConn,
  ): Promise<void> {
    let unreadable = false;
    let connected = conn !== undefined;
    for (let delay = 1; this.#steppingDownFor === successor;) {
      try {
        if (connected) {
          connected = !await conn!.hungUp(
            HANG_UP_WAIT_MS,
            this.#stopping.signal,
          );
        } else {
          await sleep(delay, this.#stopping.signal, "stepping down");
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
    const successor = this.#steppingDownFor;
    if (successor === undefined || this.#state !== "handing-over") return true;
    const standing = this.#lockFile
      ? handoverStanding(this.dir, this.id, this.#lockFile, successor)
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
    this.#moveTo("upgraded", {
      type: "upgraded",
      successorPid: successor.pid,
      durationMs: this.#upgradedAt - this.#handoverStartedAt,
    }, `pid ${successor.pid} took over; draining`);
    this.#emit("handedOver", successor.pid);
    const outcome = this.#outcome = newOutcome();
    this.#takeover.upgraded.abort(new UpgradeCompletedError("serve new work"));
    if (this.#rollbackWindow > 0) {
      inBackground(
        `standing by for pid ${successor.pid}`,
        () => this.#standBy(outcome, successor),
        {
          logger: this.#logger,
          // Without a way to watch it, the takeover stands.
          recover: () => {
            forget(successor);
            outcome.final.resolve();
          },
        },
      );
    } else {
      forget(successor);
      outcome.final.resolve();
    }
    return true;
  }

  /**
   * The rollback window: waits for `successor` to die; if it does within
   * the window while still the recorded owner, this process resumes,
   * otherwise the takeover is final.
   */
  async #standBy(outcome: Outcome, successor: ProcessRef): Promise<void> {
    this.#logger.info(
      `tableroll: standing by for ${this.#rollbackWindow} ms in case pid ${successor.pid} dies`,
    );
    const window = new AbortController();
    // This timer keeps the process alive for the window.
    const timer = setTimeout(() => window.abort(), this.#rollbackWindow);
    const watching = AbortSignal.any([window.signal, this.#stopping.signal]);
    try {
      // The id the successor recorded, while it certainly still is the owner.
      const id = await this.#retryWhile(
        watching,
        () => readOwnerRecord(`${this.dir}/${PID_FILE}`),
      );
      try {
        await exited(successor, watching);
      } catch {
        // A successor that died just as the window ended still counts.
        if (this.#state !== "upgraded" || isAlive(successor)) {
          if (this.#state === "upgraded") {
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
          this.#state === "upgraded" &&
          await recordedOwnerGone(this.dir, id) &&
          this.#resume(successor, [id], why),
      );
      if (!resumed && this.#state === "upgraded") {
        this.#logger.info(
          `tableroll: pid ${successor.pid} died, but another process is taking over from it; finishing the drain`,
        );
      }
    } finally {
      clearTimeout(timer);
      forget(successor);
      // Unless this process took the service back, the takeover stands.
      if (this.#state !== "owner") outcome.final.resolve();
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
    if (!reclaimOwnership(this.dir, this.id, replaceable)) return false;
    this.#steppingDownFor = undefined;
    forget(successor);
    const rolledBack = this.#state === "upgraded";
    if (!rolledBack) {
      const reason = new PeerClosedError(
        `${why}; ${this.id} is the owner again and keeps serving`,
      );
      this.#handoverFailed(successor.pid, reason, "handover failed");
      this.#emit("handoverFailed", successor.pid, reason);
      return true;
    }
    this.#moveTo(
      "owner",
      {
        type: "rolled-back",
        successorPid: successor.pid,
        durationMs: performance.now() - this.#upgradedAt,
      },
      `ROLLED BACK: ${why}; ${this.id} is the owner of ${this.dir} again and accepts again`,
    );
    this.#takeover = new Takeover();
    this.#emit("becameOwner");
    this.#outcome.rolledBack.resolve();
    return true;
  }

  #emit<E extends keyof LifecycleHooks>(
    event: E,
    ...args: Parameters<NonNullable<LifecycleHooks[E]>>
  ): void {
    emit(this.#hooks, event, args, (err) =>
      this.#logger.error(
        `tableroll: ${event} handling failed: ${(err as Error).message}`,
      ));
  }

  /** Back to owner after a failed handover to `pid`, reported with `context`. */
  #handoverFailed(pid: number, reason: unknown, context: string): void {
    const why = String((reason as Error)?.message ?? reason);
    this.#moveTo("owner", {
      type: "handover-failed",
      successorPid: pid,
      reason: why,
      error: reason,
      durationMs: performance.now() - this.#handoverStartedAt,
    }, `${context}: ${why}`);
  }

  /**
   * The one place the state changes, and so where each change is reported:
   * `event` to `onEvent`, with `message` to the logger. An edge not in the
   * diagram is a bug.
   */
  #moveTo(next: UpgraderState, event: EventInput, message: string): void {
    if (!TRANSITIONS[this.#state].includes(next)) {
      throw new TablerollError(
        `tableroll: no transition from ${this.#state} to ${next}; this is a bug in tableroll, please report it`,
      );
    }
    this.#state = next;
    this.#events.emit(event, message);
  }

  #checkMutable(action: string): void {
    switch (this.#state) {
      case "handing-over":
        throw new UpgradeInProgressError(action);
      case "upgraded":
        throw new UpgradeCompletedError(action);
      case "stopped":
        throw new StoppedError(action);
    }
  }
}
