/**
 * Self-upgrade: the owner starts a new copy of its own program, which takes
 * over through the ordinary handover, as `cloudflare/tableflip` does for Go
 * services: replace the program on disk, send `SIGHUP`, the new version
 * serves.
 *
 * @module
 */
import {
  close,
  commandLine,
  delay,
  deleteEnv,
  dup,
  dup3,
  environment,
  getEnv,
  getpid,
  onSignal,
  parseProcessStat,
  pipe,
  read,
  reapChild,
  type Reaped,
  selfStat,
  sendSignal,
  setCloseOnExec,
  setNonBlocking,
  type SignalName,
  spawnDetached,
  unlink,
  waitReadable,
  write,
} from "../ffi/mod.ts";
import {
  NotOwnerError,
  SuccessorFailedError,
  UpgradeInProgressError,
  UpgradeTimeoutError,
} from "./errors.ts";
import type { LifecycleHooks } from "./lifecycle.ts";
import { writeAtomically } from "./pid_file.ts";
import {
  encodeUpgradeMarker,
  type UpgradeMarker,
  upgradeMarkerPath,
} from "./upgrade_marker.ts";
import { type Logger, silentLogger } from "./logger.ts";
import { describe, inBackground } from "./background.ts";
import { forget, observe } from "./process_ref.ts";
import type { SystemdNotifier } from "./notify.ts";
import type { UpgraderState } from "./upgrader.ts";

/**
 * Names the descriptor, in a copy started by `upgrade()`, that is the
 * stderr to return to once it owns the sockets; until then its stderr is a
 * pipe read by the process that started it.
 */
const STDERR_ENV = "TABLEROLL_UPGRADE_STDERR_FD";
const STDERR_TAIL_BYTES = 4096;
const POLL_MS = 20;
const KILL_SIGNAL = 9;

/** Options of `Upgrader.upgrade()`. */
export interface UpgradeOptions {
  /**
   * Milliseconds the new copy gets to take over before it is killed.
   * Default: the upgrader's `upgradeTimeout`.
   */
  timeout?: number;
  /**
   * The command line to start, `argv[0]` looked up in `PATH` when it has no
   * slash. Default: this process's own, from `/proc/self/cmdline` (the
   * runtime and its arguments, or a compiled program's path), so that a
   * program or script replaced on disk starts in its new version.
   */
  argv?: readonly string[];
}

/** What a {@linkcode SelfUpgrade} needs from its upgrader. */
export interface SelfUpgradeContext {
  /** The upgrader's state right now. */
  state(): UpgraderState;
  /** Where to report. */
  logger: Logger;
  /** The service manager, if there is one to notify. */
  notifier?: SystemdNotifier;
  /** Default of {@linkcode UpgradeOptions.timeout}. */
  timeout: number;
}

/** The running upgrade: the started copy, and whether it took over. */
interface Running {
  pid: number;
  tookOver: boolean;
}

/**
 * Starts and supervises the successor of `Upgrader.upgrade()`. In a copy
 * that was started this way it also returns stderr to the original once the
 * copy owns the sockets.
 */
export class SelfUpgrade implements LifecycleHooks {
  readonly #context: SelfUpgradeContext;
  #running: Running | undefined;
  #originalStderr: number | undefined;

  /**
   * Reads (and removes) the stderr hand-back of a copy started by
   * `upgrade()`; one that names no open descriptor is ignored with a warning.
   */
  constructor(context: SelfUpgradeContext) {
    this.#context = context;
    const fd = getEnv(STDERR_ENV);
    if (fd === undefined) return;
    deleteEnv(STDERR_ENV);
    try {
      if (!/^\d+$/.test(fd)) throw new Error("not a descriptor number");
      setCloseOnExec(Number(fd), true);
      this.#originalStderr = Number(fd);
    } catch (err) {
      context.logger.warn(
        `tableroll: ignoring ${STDERR_ENV}=${fd}, meant for a copy started by upgrade(): ${
          describe(err)
        }; stderr stays as it is`,
      );
    }
  }

  /** See `Upgrader.upgrade()`. */
  async run(options: UpgradeOptions): Promise<void> {
    const { logger, notifier } = this.#context;
    const state = this.#context.state();
    if (this.#running || state === "handing-over") {
      throw new UpgradeInProgressError("start an upgrade");
    }
    if (state !== "owner") throw new NotOwnerError(state);
    const argv = options.argv ?? commandLine();
    const timeout = options.timeout ?? this.#context.timeout;
    notifier?.reloading(`Upgrading: starting a new copy of ${argv[0]}`);
    const running: Running = { pid: 0, tookOver: false };
    this.#running = running;
    try {
      const stderr = new StderrRelay();
      running.pid = startCopy(argv, stderr);
      logger.info(
        `tableroll: started pid ${running.pid} (${
          argv.join(" ")
        }) to take over`,
      );
      await this.#supervise(running, timeout, stderr);
    } catch (err) {
      notifier?.send({
        READY: 1,
        STATUS: `Upgrade failed; serving (pid ${getpid()})`,
      });
      throw err;
    } finally {
      this.#running = undefined;
    }
  }

  /** Hook: a copy started by `upgrade()` owns the sockets now. */
  becameOwner(): void {
    this.#restoreStderr();
  }

  /** Hook: `pid` took over. */
  handedOver(pid: number): void {
    const running = this.#running;
    if (!running) return;
    running.tookOver = true;
    if (pid !== running.pid) {
      this.#context.logger.warn(
        `tableroll: pid ${pid} took over, not pid ${running.pid} that upgrade() started`,
      );
    }
  }

  /** Hook: the upgrader stopped. */
  stopped(): void {
    this.#restoreStderr();
  }

  #restoreStderr(): void {
    if (this.#originalStderr === undefined) return;
    dup3(this.#originalStderr, 2, false);
    close(this.#originalStderr);
    this.#originalStderr = undefined;
  }

  /** Waits until the copy took over, ended, or ran out of time. */
  async #supervise(
    running: Running,
    timeout: number,
    stderr: StderrRelay,
  ): Promise<void> {
    const deadline = Date.now() + timeout;
    for (;;) {
      if (running.tookOver) {
        this.#context.logger.info(
          `tableroll: pid ${running.pid} took over after upgrade()`,
        );
        reapOnExit(running.pid, this.#context.logger);
        return;
      }
      const ended = reapChild(running.pid);
      if (ended) {
        throw new SuccessorFailedError(
          running.pid,
          ended,
          await this.#afterFailure(stderr),
        );
      }
      if (Date.now() >= deadline) {
        sendSignal(running.pid, KILL_SIGNAL);
        await reaped(running.pid);
        await this.#afterFailure(stderr);
        throw new UpgradeTimeoutError(
          `the new copy (pid ${running.pid}) did not take over within ${timeout} ms; ` +
            "it was killed and this process is still the owner: look at its output, fix it and try again",
        );
      }
      await delay(POLL_MS);
    }
  }

  /** The copy's stderr tail, once the upgrader gave up its handover too. */
  async #afterFailure(stderr: StderrRelay): Promise<string> {
    // A successor that died mid-handover leaves the upgrader in
    // handing-over for a moment; the failure is only over once it is owner.
    const deadline = Date.now() + this.#context.timeout;
    while (
      this.#context.state() === "handing-over" && Date.now() < deadline
    ) {
      await delay(POLL_MS);
    }
    return await stderr.tail();
  }
}

/**
 * Calls `upgrader.upgrade()` on every `signal` (default `SIGHUP`, as
 * `systemctl reload` with `ExecReload=kill -HUP $MAINPID` sends it) and
 * reports the outcome to `logger`. A signal that arrives while an upgrade
 * runs is ignored and logged. Returns a function that stops listening.
 *
 * While it listens, `<dir>/<id>.self-upgrade` says so (the process, the
 * signal, the upgrades started and failed), which is how `tableroll
 * upgrade DIR` knows it may send the signal; the file goes when it stops
 * listening or the upgrader stops.
 *
 * @example
 * ```ts ignore
 * await upgrader.ready();
 * upgradeOnSignal(upgrader, { logger: console });
 * ```
 */
export function upgradeOnSignal(
  upgrader: {
    upgrade(options?: UpgradeOptions): Promise<void>;
    readonly dir: string;
    readonly id: string;
  },
  options: { signal?: SignalName; logger?: Logger } & UpgradeOptions = {},
): () => void {
  const { signal = "SIGHUP", logger = silentLogger, ...upgradeOptions } =
    options;
  let running = false;
  const stopListening = onSignal(signal, () => {
    if (running) {
      logger.warn(
        `tableroll: ${signal} ignored: an upgrade is already running`,
      );
      return;
    }
    running = true;
    logger.info(`tableroll: ${signal}: upgrading`);
    advert.started();
    upgrader.upgrade(upgradeOptions).then(
      () => logger.info("tableroll: upgrade complete; draining"),
      (err) => {
        advert.failed(err.message);
        logger.error(`tableroll: upgrade failed: ${err.message}`);
      },
    ).finally(() => running = false);
  });
  // Listening first: the marker must never promise a signal nobody handles.
  const advert = new UpgradeAdvert(
    upgradeMarkerPath(upgrader.dir, upgrader.id),
    signal,
    logger,
  );
  return () => {
    stopListening();
    advert.remove();
  };
}

/** This process's self-upgrade marker, kept up to date (see `upgrade_marker.ts`). */
class UpgradeAdvert {
  readonly #path: string;
  readonly #marker: UpgradeMarker;
  readonly #logger: Logger;

  constructor(path: string, signal: SignalName, logger: Logger) {
    this.#path = path;
    this.#logger = logger;
    this.#marker = {
      pid: getpid(),
      start: Number(parseProcessStat(selfStat()).startTime),
      signal,
      started: 0,
      failed: 0,
      lastFailure: null,
    };
    this.#write();
  }

  started(): void {
    this.#marker.started++;
    this.#write();
  }

  failed(reason: string): void {
    this.#marker.failed++;
    this.#marker.lastFailure = reason;
    this.#write();
  }

  remove(): void {
    unlink(this.#path);
  }

  #write(): void {
    try {
      writeAtomically(this.#path, encodeUpgradeMarker(this.#marker), 0o600);
    } catch (err) {
      // Only `tableroll upgrade` needs it; the signal still works.
      this.#logger.warn(
        `tableroll: cannot write ${this.#path}: ${
          (err as Error).message
        }; tableroll upgrade will not find this process`,
      );
    }
  }
}

/**
 * Starts `argv` with this process's environment, its stderr the write end
 * of `stderr`'s pipe and the original stderr handed down for later.
 */
function startCopy(argv: readonly string[], stderr: StderrRelay): number {
  const original = dup(2);
  try {
    return spawnDetached({
      file: argv[0],
      argv,
      env: { ...environment(), [STDERR_ENV]: String(original) },
      dup2: [[original, original], [stderr.writeEnd, 2]],
    });
  } catch (err) {
    stderr.close();
    throw err;
  } finally {
    close(original);
    stderr.closeWriteEnd();
  }
}

/**
 * The stderr of a starting copy: a pipe whose bytes are passed on to this
 * process's stderr as they come, the last few kept for an error message.
 * It ends when the copy exits or returns to its original stderr.
 */
class StderrRelay {
  readonly writeEnd: number;
  readonly #readEnd: number;
  #writeOpen = true;
  #kept = new Uint8Array(0);
  readonly #done: Promise<void>;
  readonly #stop = new AbortController();

  constructor() {
    [this.#readEnd, this.writeEnd] = pipe();
    setNonBlocking(this.#readEnd, true);
    this.#done = this.#relay();
  }

  closeWriteEnd(): void {
    if (!this.#writeOpen) return;
    this.#writeOpen = false;
    close(this.writeEnd);
  }

  close(): void {
    this.closeWriteEnd();
    this.#stop.abort();
  }

  /** The last lines written, once the pipe ended (or after a second). */
  async tail(): Promise<string> {
    await Promise.race([this.#done, delay(1000)]);
    return new TextDecoder().decode(this.#kept).trimEnd();
  }

  async #relay(): Promise<void> {
    try {
      for (;;) {
        // The copy holds only the write end: the read end is this process's alone.
        await waitReadable(this.#readEnd, {
          ref: false,
          exclusive: true,
          signal: this.#stop.signal,
        });
        for (let chunk = read(this.#readEnd, 65536); chunk !== null;) {
          if (chunk.length === 0) return;
          this.#keep(chunk);
          passOn(chunk);
          chunk = read(this.#readEnd, 65536);
        }
      }
    } catch {
      // Stopped, or the pipe failed: nothing more to relay.
    } finally {
      close(this.#readEnd);
    }
  }

  #keep(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#kept.length + chunk.length);
    joined.set(this.#kept);
    joined.set(chunk, this.#kept.length);
    this.#kept = joined.slice(-STDERR_TAIL_BYTES);
  }
}

/** Writes `chunk` to this process's stderr, dropping what would block. */
function passOn(chunk: Uint8Array): void {
  try {
    for (let off = 0; off < chunk.length;) {
      const n = write(2, chunk.subarray(off));
      if (n === null) return;
      off += n;
    }
  } catch {
    // This process's stderr is gone; the copy's output still goes to the tail.
  }
}

/**
 * Reaps the copy `pid`, this process's child, as soon as it exits while this
 * process still runs (within a rollback window, or a long drain), so that it
 * does not linger as a zombie. The wait does not keep this process alive;
 * after it exits, the service manager reaps the copy. Without `pidfd_open`
 * nothing watches it.
 */
function reapOnExit(pid: number, logger: Logger): void {
  inBackground(`watching pid ${pid}, which took over`, async () => {
    const child = observe(pid);
    if (child === null) {
      reapChild(pid);
      return;
    }
    try {
      if (child.pidfd === undefined) return;
      await waitReadable(child.pidfd, { ref: false });
      reapChild(pid);
    } finally {
      forget(child);
    }
  }, { logger });
}

/** Polls until the child `pid` has been reaped. */
async function reaped(pid: number): Promise<Reaped> {
  for (;;) {
    const ended = reapChild(pid);
    if (ended) return ended;
    await delay(POLL_MS);
  }
}
