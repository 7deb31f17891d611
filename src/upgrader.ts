/**
 * The upgrader: a process's part in tableroll's handover, as an explicit
 * state machine. The successor's side (`successor.ts`, loaded by
 * `create()` when there is a predecessor) and the owner's (`owner.ts`,
 * loaded by `ready()`) do the talking; every change of state happens here.
 *
 * ```
 * starting ──ready()──▶ owner ──lock holder connects──▶ handing-over ──recorded──▶ upgraded
 *    │                    ▲ ▲                                 │                        │
 *    │                    │ └── successor failed, died or left ┘                        │
 *    │                    └──── rolled back: the successor died within the window ─────┘
 *    └──────────────── stop() from any state ──────────────────────────▶ stopped
 * ```
 *
 * `handing-over` lasts from the successor's connection until it has
 * recorded itself as owner in `<dir>/pid`, not merely until this process
 * said it steps down: a successor that dies or gives up before recording
 * leaves this process the owner, serving as before. With a `rollbackWindow`,
 * an `upgraded` process keeps its descriptors for that long and takes the
 * service back if the successor dies while still the recorded owner.
 *
 * @module
 */
import { close, dup3, getpid, setCloseOnExec, unlink } from "../ffi/fd.ts";
import { deleteEnv, getEnv } from "../ffi/runtime.ts";
import {
  checkDirectory,
  checkId,
  controlSocketPath,
  listenControl,
  type LockFile,
  OwnerLock,
} from "./coordination.ts";
import {
  asTablerollError,
  refusedIn,
  rethrowing,
  TablerollError,
} from "./errors.ts";
import {
  describe,
  type EventInput,
  EventReporter,
  inBackground,
  type Logger,
  type UpgraderEvent,
} from "./events.ts";
import { DescriptorStore, type Fds } from "./fds.ts";
import type { Owner } from "./owner.ts";
import type { Predecessor } from "./successor.ts";

/** Where an upgrader is in its life. */
export type UpgraderState =
  | "starting"
  | "owner"
  | "handing-over"
  | "upgraded"
  | "stopped";

/**
 * A step of a takeover, as {@linkcode Upgrader.takeovers} yields them:
 * `upgraded` (a successor took over: stop accepting and drain), then
 * `final` (it keeps the service: exit once drained) or `rolled-back` (it
 * died within the rollback window: this process serves again).
 */
export type TakeoverStep = "upgraded" | "final" | "rolled-back";

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

/** Options of {@linkcode Upgrader.create}. */
export interface UpgraderOptions {
  /** This process's id, unique among live processes; names `<dir>/<id>.sock`. Default: the pid. */
  id?: string;
  /** Cancels `create()`: the wait for the lock and the transfer from the predecessor, like Go's context. */
  signal?: AbortSignal;
  /**
   * Milliseconds a successor gets, from connecting to its `ready()`, before
   * this process gives up on it and stays owner; also bounds this process's
   * own transfer from the predecessor and its `ready()`. Default 60 000.
   */
  upgradeTimeout?: number;
  /**
   * Where to report progress: `console`, an `@std/log` logger… Each event is
   * also logged as a message and a data object. Default: silent.
   */
  logger?: Logger;
  /**
   * Called with each {@linkcode UpgraderEvent}, synchronously, from inside
   * `create()` on (`inherited` happens there): for metrics and audit logs.
   * What it throws is logged, never raised.
   */
  onEvent?: (event: UpgraderEvent) => void;
  /**
   * Milliseconds after a successor took over during which this process
   * stays a warm standby: it keeps its descriptors, and takes the service
   * back if the successor dies while still the recorded owner
   * (`rolled-back`). The process lives that much longer. Default 0.
   */
  rollbackWindow?: number;
}

/** What the owner's and the successor's sides, and the integrations, use of an upgrader. */
export interface UpgraderCore {
  readonly dir: string;
  readonly id: string;
  readonly events: EventReporter;
  readonly store: DescriptorStore;
  readonly controlFd: number;
  readonly upgradeTimeout: number;
  readonly rollbackWindow: number;
  /** Aborted by `stop()`. */
  readonly stopping: AbortSignal;
  /** Where the lock lives, if the kernel shows it. */
  readonly lockFile: LockFile | undefined;
  readonly state: UpgraderState;
  /**
   * Changes the state along an edge of the diagram, reporting `event` with
   * `message`; `upgraded` and `rolled-back` are steps of
   * {@linkcode Upgrader.takeovers} too.
   */
  moveTo(next: UpgraderState, event: EventInput, message: string): void;
  /** The latest takeover is final: the `final` step of {@linkcode Upgrader.takeovers}. */
  final(): void;
}

const cores = new WeakMap<object, UpgraderCore>();

/** The core of `upgrader`, for the library's own integrations; throws for another object. */
export function coreOf(upgrader: object): UpgraderCore {
  const core = cores.get(upgrader);
  if (!core) {
    throw new TypeError("expected an Upgrader (from Upgrader.create())");
  }
  return core;
}

/**
 * The reporter of `upgrader`, through which the library's integrations
 * report; `undefined` for an object that is no upgrader (a stand-in).
 */
export function reporterOf(upgrader: object): EventReporter | undefined {
  return cores.get(upgrader)?.events;
}

/**
 * Calls `listener` with every event of `upgrader` from now on; returns the
 * function that stops it. Throws for an object that is no upgrader.
 */
export function follow(
  upgrader: object,
  listener: (event: UpgraderEvent) => void,
): () => void {
  return coreOf(upgrader).events.listen(listener);
}

/** One reader of {@linkcode Upgrader.takeovers}: its steps not yet read. */
interface StepQueue {
  steps: TakeoverStep[];
  wake?: () => void;
}

/**
 * Takes over the descriptors of the process that currently owns the
 * coordination directory, if any, and later hands them to the next one.
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
 * const takeovers = owner.takeovers();
 *
 * const successor = await Upgrader.create(dir, { id: "v2" });
 * const inherited = successor.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
 * strictEqual(inherited.inherited, true);
 * strictEqual(inherited.addr, web.addr); // the same socket, the same port
 * await successor.ready();
 * strictEqual((await takeovers.next()).value, "upgraded"); // drain now
 * strictEqual((await takeovers.next()).value, "final"); // then exit
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

  readonly #core: UpgraderCore;
  readonly #store: DescriptorStore;
  readonly #events: EventReporter;
  readonly #stopping = new AbortController();
  #state: UpgraderState = "starting";
  /** When `create()` began, for the `ready` event's duration. */
  readonly #createdAt = performance.now();
  #lock: OwnerLock | undefined;
  #lockFile: LockFile | undefined;
  #predecessor: Predecessor | undefined;
  #owner: Owner | undefined;
  #ready: Promise<void> | undefined;
  readonly #readers = new Set<StepQueue>();
  /** Whether the latest takeover is final. */
  #final = false;
  readonly #stderr = StderrHandBack.take();

  private constructor(
    dir: string,
    id: string,
    controlFd: number,
    options: UpgraderOptions,
  ) {
    this.dir = dir;
    this.id = id;
    this.#events = new EventReporter(id, options.logger, options.onEvent);
    this.#store = new DescriptorStore((action) => {
      if (this.#state !== "starting" && this.#state !== "owner") {
        throw refusedIn(this.#state, action);
      }
    });
    this.fds = this.#store;
    const lockFile = () => this.#lockFile;
    const state = () => this.#state;
    this.#core = {
      dir,
      id,
      events: this.#events,
      store: this.#store,
      controlFd,
      upgradeTimeout: options.upgradeTimeout ?? 60_000,
      rollbackWindow: options.rollbackWindow ?? 0,
      stopping: this.#stopping.signal,
      get lockFile() {
        return lockFile();
      },
      get state() {
        return state();
      },
      moveTo: (next, event, message) => this.#moveTo(next, event, message),
      final: () => this.#takeover("final"),
    };
    cores.set(this, this.#core);
    this.#stderr.warnings.forEach((w) => this.#events.logger.warn(w));
  }

  /**
   * Joins the coordination directory `dir` (which must exist and belong to
   * this user): binds `<dir>/<id>.sock`, takes the lock on `<dir>/pid`, and
   * receives the current owner's descriptors if there is one. The lock is
   * held until {@linkcode Upgrader.ready} or {@linkcode Upgrader.stop}.
   * Rejects with a {@linkcode TablerollError}, or with `options.signal`'s
   * reason.
   */
  static async create(
    dir: string,
    options: UpgraderOptions = {},
  ): Promise<Upgrader> {
    let upgrader: Upgrader;
    try {
      const id = options.id ?? String(getpid());
      checkId(dir, id);
      checkDirectory(dir);
      const path = controlSocketPath(dir, id);
      const controlFd = listenControl(path);
      try {
        upgrader = new Upgrader(dir, id, controlFd, options);
      } catch (err) {
        close(controlFd);
        unlink(path);
        throw err;
      }
    } catch (err) {
      throw asTablerollError(err);
    }
    try {
      await upgrader.#join(options.signal);
    } catch (err) {
      await upgrader.stop();
      throw asTablerollError(err);
    }
    return upgrader;
  }

  /** The current state. */
  get state(): UpgraderState {
    return this.#state;
  }

  /**
   * Declares this process ready to serve: closes inherited descriptors that
   * were not claimed (with a warning: claim or listen on every inherited
   * name first; a later `listen` of a closed name is `claimed-too-late`),
   * tells the predecessor to step down, records this process as the owner
   * and releases the lock. If it fails, the lock is released at once and
   * the upgrader stops; the process should exit.
   */
  ready(): Promise<void> {
    this.#ready ??= this.#becomeOwner().catch((err) => {
      throw asTablerollError(err);
    });
    return this.#ready;
  }

  /**
   * The steps of the takeovers of this process's service, from now on:
   * `upgraded` when a successor took over (stop accepting and drain, which
   * the adapters do by themselves), then `final` (exit once drained) or
   * `rolled-back` (the successor died within the rollback window: accept
   * again), and so on for the next takeover. An upgrader already upgraded
   * yields where it stands first. Ends when the upgrader stops. Every call
   * makes a reader of its own.
   *
   * @example Drain after the takeover, or serve again after a rollback
   * ```ts ignore
   * for await (const step of upgrader.takeovers()) {
   *   if (step === "final") break; // the successor keeps the service
   * }
   * await server.finished;
   * await upgrader.stop();
   * ```
   */
  takeovers(): AsyncIterableIterator<TakeoverStep> {
    const queue: StepQueue = {
      steps: this.#state !== "upgraded"
        ? []
        : this.#final
        ? ["upgraded", "final"]
        : ["upgraded"],
    };
    const stopped = this.#state === "stopped";
    if (!stopped) this.#readers.add(queue);
    const done = { done: true, value: undefined } as const;
    const readers = this.#readers;
    return {
      next: async () => {
        while (queue.steps.length === 0) {
          if (!readers.has(queue)) return done;
          await new Promise<void>((wake) => queue.wake = wake);
        }
        return { done: false, value: queue.steps.shift()! };
      },
      return: () => {
        readers.delete(queue);
        queue.wake?.();
        return Promise.resolve(done);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }

  /**
   * Stops: closes the control socket and every stored descriptor, releases
   * the lock if held, ends {@linkcode Upgrader.takeovers} and makes a pending
   * `ready()` fail. A predecessor waiting for `ready()` stays the owner.
   * Never throws: what fails is logged.
   */
  stop(): Promise<void> {
    if (this.#state === "stopped") return Promise.resolve();
    const from = this.#state;
    this.#moveTo("stopped", { type: "stopped", from }, `${this.id} stopped`);
    this.#stopping.abort(
      new TablerollError(
        "stopped",
        "the upgrader was stopped; create a new one",
      ),
    );
    // Each step on its own: one that fails must not leave the others undone.
    for (
      const step of [
        () => this.#predecessor?.release(),
        () => this.#owner?.stop(),
        () => this.#lock?.release(),
        () => close(this.#core.controlFd),
        () => unlink(controlSocketPath(this.dir, this.id)),
        () => this.#store.closeAll(),
        () => this.#stderr.restore(),
      ]
    ) {
      try {
        step();
      } catch (err) {
        this.#events.logger.error(
          `tableroll: while stopping: ${describe(err)}`,
        );
      }
    }
    for (const reader of this.#readers) reader.wake?.();
    this.#readers.clear();
    return Promise.resolve();
  }

  /** Calls {@linkcode Upgrader.stop}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async #join(signal?: AbortSignal): Promise<void> {
    const logger = this.#events.logger;
    this.#lock = await OwnerLock.acquire(this.dir, signal, logger);
    this.#lockFile = this.#lock.file;
    // The kernel's own view of this descriptor's lock: cheap, and printed by
    // the same code as /proc/locks, which a first read makes wait 10–15 ms.
    if (!this.#lock.shownHeldBy(getpid())) {
      this.#lockFile = undefined;
      logger.warn(
        `tableroll: the kernel does not show the lock on ${this.dir}/pid; ` +
          "any process of this user that connects will be handed the descriptors",
      );
    }
    const owner = this.#lock.readOwner();
    if (owner === "" || owner === this.id) {
      logger.debug(`tableroll: no predecessor in ${this.dir}`);
      return;
    }
    const { joinOwner } = await loading(
      "the successor's side",
      import("./successor.ts"),
    );
    this.#predecessor = await joinOwner(this.#core, owner, signal) ??
      undefined;
  }

  async #becomeOwner(): Promise<void> {
    if (this.#state !== "starting") {
      throw refusedIn(this.#state, "become ready");
    }
    // The owner's side is loaded now, while a failure (no descriptor left)
    // fails ready() and leaves the predecessor in charge: a module that
    // failed to load later could never be loaded again (Deno keeps the
    // failure), and this process could never hand over.
    try {
      const { Owner } = await loading("the owner's side", import("./owner.ts"));
      this.#owner = new Owner(this.#core);
    } catch (err) {
      await this.stop();
      throw err;
    }
    const unclaimed = this.#store.closeUnclaimed();
    if (unclaimed.length > 0) {
      this.#events.logger.warn(
        `tableroll: ready() closed inherited descriptors nothing had claimed: ${
          unclaimed.join(", ")
        }; listen on (or claim) every inherited name before ready(), or the predecessor's connections on it are lost`,
      );
    }
    const predecessor = this.#predecessor;
    try {
      if (predecessor) {
        this.#events.emit(
          {
            type: "claiming",
            predecessor: predecessor.id,
            predecessorPid: predecessor.pid,
          },
          `asking ${predecessor.id} (pid ${predecessor.pid}) to step down`,
        );
        await predecessor.askToStepDown(this.#core);
      }
      this.#lock!.writeOwner(this.id);
    } catch (err) {
      await this.stop();
      throw err;
    } finally {
      // Closed after the record is written: the predecessor takes the
      // hang-up as the sign to look at it.
      predecessor?.release();
      this.#predecessor = undefined;
      this.#lock?.release();
      this.#lock = undefined;
    }
    this.#moveTo("owner", {
      type: "ready",
      predecessor: predecessor?.id ?? null,
      predecessorPid: predecessor?.pid ?? null,
      durationMs: performance.now() - this.#createdAt,
    }, `${this.id} owns ${this.dir}`);
    this.#acceptSuccessors();
  }

  /**
   * Runs the owner's accept loop in the background. Should it ever end by
   * surprise, it starts again, so that the owner always admits the next
   * successor.
   */
  #acceptSuccessors(): void {
    inBackground(
      this.#events.logger,
      "accepting successors on the control socket",
      () => this.#owner!.acceptLoop(),
      () => {
        if (this.#state !== "stopped") this.#acceptSuccessors();
      },
    );
  }

  /**
   * The one place the state changes, and so where each change is reported:
   * `event` to the listeners, with `message` to the logger. An edge not in
   * the diagram is a bug.
   */
  #moveTo(next: UpgraderState, event: EventInput, message: string): void {
    if (!TRANSITIONS[this.#state].includes(next)) {
      throw new Error(
        `tableroll: no transition from ${this.#state} to ${next}; this is a bug in tableroll, please report it`,
      );
    }
    this.#state = next;
    if (next === "owner") this.#stderr.restore();
    if (event.type === "upgraded" || event.type === "rolled-back") {
      this.#takeover(event.type);
    }
    this.#events.emit(event, message);
  }

  /** Hands `step` to every reader of {@linkcode Upgrader.takeovers}. */
  #takeover(step: TakeoverStep): void {
    if (step === "final" && this.#final) return;
    this.#final = step === "final";
    for (const reader of this.#readers) {
      reader.steps.push(step);
      reader.wake?.();
    }
  }
}

/**
 * `module`, loaded when a start needs it; a failure (the runtime could not
 * read it: no descriptor left, say) is a `system` error that says so.
 */
async function loading<T>(what: string, module: Promise<T>): Promise<T> {
  try {
    return await module;
  } catch (err) {
    throw new TablerollError(
      "system",
      `loading ${what} of tableroll failed: ${describe(err)}; ` +
        "the process may be out of descriptors or memory",
      { cause: err },
    );
  }
}

/** The variable naming a copy's original stderr (see {@linkcode StderrHandBack}). */
export const STDERR_HAND_BACK = "TABLEROLL_UPGRADE_STDERR_FD";

/**
 * The stderr of a copy started by a self-upgrade (`@tableroll/tableroll/
 * self-upgrade`): until it owns the sockets, its stderr is a pipe the
 * starting process reads (to report why a copy failed), and the original is
 * passed down as the descriptor `TABLEROLL_UPGRADE_STDERR_FD` names. Once
 * the copy is the owner, or stops, it returns to the original.
 */
class StderrHandBack {
  static readonly VARIABLE = STDERR_HAND_BACK;
  /** What cannot be used of the variable, for the logger. */
  readonly warnings: string[] = [];
  #original: number | undefined;

  /** Reads (and removes) the variable; a number that names no descriptor is ignored. */
  static take(): StderrHandBack {
    const handBack = new StderrHandBack();
    const value = getEnv(StderrHandBack.VARIABLE);
    if (value === undefined) return handBack;
    deleteEnv(StderrHandBack.VARIABLE);
    try {
      if (!/^\d+$/.test(value)) throw new Error("not a descriptor number");
      rethrowing(() => setCloseOnExec(Number(value), true));
      handBack.#original = Number(value);
    } catch (err) {
      handBack.warnings.push(
        `tableroll: ignoring ${StderrHandBack.VARIABLE}=${value}, meant for a copy started by a self-upgrade: ${
          describe(err)
        }; stderr stays as it is`,
      );
    }
    return handBack;
  }

  /** Makes the original stderr this process's stderr again (once). */
  restore(): void {
    if (this.#original === undefined) return;
    const original = this.#original;
    this.#original = undefined;
    dup3(original, 2, false);
    close(original);
  }
}
