/**
 * Self-upgrade: the owner starts a new copy of its own program, which takes
 * over through the ordinary handover, as `cloudflare/tableflip` does for Go
 * services: replace the program on disk, send `SIGHUP` (or `systemctl
 * reload`), the new version serves. Nothing here is loaded unless this
 * entry point is imported.
 *
 * The copy runs the command line of `/proc/self/cmdline` (`deno run …
 * app.ts`, `bun app.ts`, or a compiled binary's path, so that a file
 * replaced on disk starts in its new version), with the same environment and
 * working directory, in its own session (`posix_spawnp` with
 * `POSIX_SPAWN_SETSID`, signals reset to their defaults). It shares stdout;
 * its stderr passes through this process, which keeps the tail for the
 * error if it fails, until it owns the sockets. On Deno it needs
 * `--allow-env`: the environment is passed on.
 *
 * @example Upgrade on SIGHUP after replacing the program
 * ```ts ignore
 * import { upgradeOnSignal } from "@tableroll/tableroll/self-upgrade";
 *
 * await upgrader.ready();
 * upgradeOnSignal(upgrader); // SIGHUP: start the new version, which takes over
 * ```
 *
 * @module
 */
import {
  close,
  dup,
  getpid,
  pipe,
  read,
  setNonBlocking,
  unlink,
  write,
  writeFileAtomically,
} from "../ffi/fd.ts";
import { commandLine, parseProcessStat, selfStat } from "../ffi/proc.ts";
import { environment, onSignal, type SignalName } from "../ffi/runtime.ts";
import {
  reapChild,
  type Reaped,
  sendSignal,
  spawnDetached,
} from "../ffi/spawn.ts";
import { delay, waitReadable } from "../ffi/wait.ts";
import { asTablerollError, refusedIn, TablerollError } from "../src/errors.ts";
import { describe, inBackground, type Logger } from "../src/events.ts";
import { forget, observe } from "../src/process_ref.ts";
import {
  coreOf,
  follow,
  STDERR_HAND_BACK,
  type Upgrader,
  type UpgraderCore,
} from "../src/upgrader.ts";
import {
  encodeUpgradeMarker,
  type UpgradeMarker,
  upgradeMarkerPath,
} from "./marker.ts";

const STDERR_TAIL_BYTES = 4096;
const POLL_MS = 20;
const KILL_SIGNAL = 9;

/** Options of {@linkcode upgrade}. */
export interface UpgradeOptions {
  /**
   * Milliseconds the new copy gets to take over before it is killed.
   * Default: the upgrader's `upgradeTimeout`.
   */
  timeout?: number;
  /**
   * The command line to start, `argv[0]` looked up in `PATH` when it has no
   * slash. Default: this process's own, from `/proc/self/cmdline`.
   */
  argv?: readonly string[];
}

/** The running upgrade: the started copy, and whether it took over. */
interface Running {
  pid: number;
  tookOver: boolean;
}

/** The upgrade each upgrader is running, if any. */
const running = new WeakMap<UpgraderCore, Running>();

/**
 * Starts a new copy of this program and resolves once it has taken over;
 * this process then drains as after any takeover (`takeovers()` yields
 * `upgraded`). Rejects, with this process still the owner, with a
 * {@linkcode TablerollError}: `successor-failed` (it exited; `successor`
 * says how, with the tail of its stderr), `timeout` (it did not take over
 * in time and was killed), `upgrade-in-progress` or `not-owner`.
 *
 * @example
 * ```ts ignore
 * await upgrade(upgrader).catch((err) => console.error(err.message));
 * ```
 */
export async function upgrade(
  upgrader: Upgrader,
  options: UpgradeOptions = {},
): Promise<void> {
  const core = coreOf(upgrader);
  if (running.has(core) || core.state === "handing-over") {
    throw refusedIn("handing-over", "start an upgrade");
  }
  if (core.state !== "owner") {
    throw new TablerollError(
      "not-owner",
      `cannot start an upgrade in state ${core.state}: only the owner can start its successor; ` +
        "call it after ready() and before a successor took over",
    );
  }
  const argv = options.argv ?? commandLine();
  const copy: Running = { pid: 0, tookOver: false };
  running.set(core, copy);
  const stopFollowing = follow(upgrader, (event) => {
    if (event.type !== "upgraded") return;
    copy.tookOver = true;
    if (event.successorPid !== copy.pid) {
      core.events.logger.warn(
        `tableroll: pid ${event.successorPid} took over, not pid ${copy.pid} that the upgrade started`,
      );
    }
  });
  try {
    const stderr = new StderrRelay();
    copy.pid = startCopy(argv, stderr);
    core.events.emit(
      { type: "upgrade-started", pid: copy.pid },
      `started pid ${copy.pid} (${argv.join(" ")}) to take over`,
    );
    await supervise(core, copy, options.timeout ?? core.upgradeTimeout, stderr);
  } catch (err) {
    const error = asTablerollError(err);
    core.events.emit({
      type: "upgrade-failed",
      pid: copy.pid,
      reason: describe(error),
      error,
    }, `upgrade failed: ${describe(error)}`);
    throw error;
  } finally {
    stopFollowing();
    running.delete(core);
  }
}

/** Waits until the copy took over, ended, or ran out of time. */
async function supervise(
  core: UpgraderCore,
  copy: Running,
  timeout: number,
  stderr: StderrRelay,
): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (copy.tookOver) {
      reapOnExit(copy.pid, core.events.logger);
      return;
    }
    const ended = reapChild(copy.pid);
    if (ended) {
      const tail = await afterFailure(core, stderr);
      throw new TablerollError(
        "successor-failed",
        `the new copy (pid ${copy.pid}) ${
          ended.signal === undefined
            ? `exited with status ${ended.code}`
            : `was killed by signal ${ended.signal}`
        } before it took over; this process is still the owner. ` +
          (tail
            ? `Its stderr ends with:\n${tail}`
            : "It wrote nothing to stderr."),
        {
          successor: {
            pid: copy.pid,
            exitCode: ended.code,
            exitSignal: ended.signal,
            stderr: tail,
          },
        },
      );
    }
    if (Date.now() >= deadline) {
      sendSignal(copy.pid, KILL_SIGNAL);
      await reaped(copy.pid);
      await afterFailure(core, stderr);
      throw new TablerollError(
        "timeout",
        `the new copy (pid ${copy.pid}) did not take over within ${timeout} ms; ` +
          "it was killed and this process is still the owner: look at its output, fix it and try again",
      );
    }
    await delay(POLL_MS);
  }
}

/** The copy's stderr tail, once the upgrader gave up its handover too. */
async function afterFailure(
  core: UpgraderCore,
  stderr: StderrRelay,
): Promise<string> {
  // A successor that died mid-handover leaves the upgrader in
  // handing-over for a moment; the failure is only over once it is owner.
  const deadline = Date.now() + core.upgradeTimeout;
  while (core.state === "handing-over" && Date.now() < deadline) {
    await delay(POLL_MS);
  }
  return await stderr.tail();
}

/** Options of {@linkcode upgradeOnSignal}. */
export interface UpgradeOnSignalOptions extends UpgradeOptions {
  /** The signal that starts an upgrade. Default `SIGHUP`, as `systemctl reload` with `ExecReload=kill -HUP $MAINPID` sends it. */
  on?: "SIGHUP" | "SIGINT" | "SIGTERM" | "SIGUSR1" | "SIGUSR2";
}

/**
 * Calls {@linkcode upgrade} on every signal `options.on` (default
 * `SIGHUP`) and logs the outcome through the upgrader's logger; a signal
 * that arrives while an upgrade runs is ignored and logged. Returns a
 * function that stops listening.
 *
 * While it listens, `<dir>/<id>.self-upgrade` says so (the process, the
 * signal, the upgrades started and failed), which is how `tableroll upgrade
 * DIR` knows it may send the signal; the file goes when it stops listening
 * or the upgrader stops.
 *
 * @example
 * ```ts ignore
 * await upgrader.ready();
 * upgradeOnSignal(upgrader);
 * ```
 */
export function upgradeOnSignal(
  upgrader: Upgrader,
  options: UpgradeOnSignalOptions = {},
): () => void {
  const { on = "SIGHUP", ...upgradeOptions } = options;
  const core = coreOf(upgrader);
  const logger = core.events.logger;
  let busy = false;
  const stopListening = onSignal(on, () => {
    if (busy) {
      logger.warn(`tableroll: ${on} ignored: an upgrade is already running`);
      return;
    }
    busy = true;
    logger.info(`tableroll: ${on}: upgrading`);
    advert.started();
    upgrade(upgrader, upgradeOptions).then(
      () => logger.info("tableroll: upgrade complete; draining"),
      (err) => advert.failed(describe(err)),
    ).finally(() => busy = false);
  });
  // Listening first: the marker must never promise a signal nobody handles.
  const advert = new UpgradeAdvert(
    upgradeMarkerPath(upgrader.dir, upgrader.id),
    on,
    logger,
  );
  const stopFollowing = follow(upgrader, (event) => {
    if (event.type === "stopped") stop();
  });
  const stop = () => {
    stopListening();
    stopFollowing();
    advert.remove();
  };
  return stop;
}

/** This process's self-upgrade marker, kept up to date (see `marker.ts`). */
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
      writeFileAtomically(this.#path, encodeUpgradeMarker(this.#marker), 0o600);
    } catch (err) {
      // Only `tableroll upgrade` needs it; the signal still works.
      this.#logger.warn(
        `tableroll: cannot write ${this.#path}: ${
          describe(err)
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
      env: { ...environment(), [STDERR_HAND_BACK]: String(original) },
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
  inBackground(logger, `watching pid ${pid}, which took over`, async () => {
    const child = observe(pid);
    try {
      if (child?.pidfd !== undefined) {
        await waitReadable(child.pidfd, { ref: false });
      } else if (child) return;
      // Dead already, or just now. A process whose main thread has ended
      // shows as a zombie while its other threads still exit, and waitpid
      // reaps it only after them: one look could come too early.
      await reaped(pid);
    } finally {
      forget(child);
    }
  });
}

/** Polls until the child `pid` has been reaped. */
async function reaped(pid: number): Promise<Reaped> {
  for (;;) {
    const ended = reapChild(pid);
    if (ended) return ended;
    await delay(POLL_MS);
  }
}
