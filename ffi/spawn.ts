/**
 * Starting a detached process and collecting its exit status, through
 * `posix_spawnp(3)` and `waitpid(2)`: the same code under Deno and Bun, no
 * runtime process API.
 *
 * @module
 */
import {
  backend,
  call,
  cString,
  libc,
  POSIX_SPAWN_SETSID,
  POSIX_SPAWN_SETSIGDEF,
  POSIX_SPAWN_SETSIGMASK,
  SIGSET_SIZE,
  SPAWN_STRUCT_SIZE,
  syscallError,
  WNOHANG,
} from "./libc.ts";
import { Errno } from "./errors.ts";

/** What {@linkcode spawnDetached} starts. */
export interface SpawnOptions {
  /** The program: a path, or a name looked up in `PATH` like `execvp(3)`. */
  file: string;
  /** The whole argument vector, `argv[0]` included. */
  argv: readonly string[];
  /** The environment, as `NAME=value` pairs. */
  env: Readonly<Record<string, string>>;
  /**
   * Descriptors to place in the child before it runs: `[from, to]` makes
   * the child's `to` a duplicate of this process's `from` (without
   * close-on-exec, even when `from === to`).
   */
  dup2?: readonly (readonly [number, number])[];
}

/** How a process ended: an exit status, or the signal that killed it. */
export type ExitStatus = { code: number; signal?: undefined } | {
  code?: undefined;
  signal: number;
};

/**
 * Starts a program in a new session (`POSIX_SPAWN_SETSID`), with every
 * signal unblocked and at its default action, the working directory and the
 * descriptors without close-on-exec of this process (0, 1 and 2 among
 * them). It is this process's child: collect its status with
 * {@linkcode reapChild} while it is, or it stays a zombie until this process
 * exits and it is handed to the nearest subreaper.
 *
 * @example
 * ```ts
 * import { strictEqual } from "node:assert";
 * import { reapChild, spawnDetached } from "./mod.ts";
 *
 * const pid = spawnDetached({ file: "sh", argv: ["sh", "-c", "exit 3"], env: {} });
 * let status = reapChild(pid);
 * while (status === null) {
 *   await new Promise((resolve) => setTimeout(resolve, 10));
 *   status = reapChild(pid);
 * }
 * strictEqual(status.code, 3);
 * ```
 */
export function spawnDetached(options: SpawnOptions): number {
  // Every C string stays referenced until posix_spawnp returned.
  const file = cString(options.file);
  const argv = pointerArray(options.argv.map(cString));
  const env = pointerArray(
    Object.entries(options.env).map(([k, v]) => cString(`${k}=${v}`)),
  );
  const attr = new Uint8Array(SPAWN_STRUCT_SIZE.attr);
  const actions = new Uint8Array(SPAWN_STRUCT_SIZE.fileActions);
  check("posix_spawnattr_init", backend().fn.posix_spawnattr_init(attr));
  check(
    "posix_spawn_file_actions_init",
    backend().fn.posix_spawn_file_actions_init(actions),
  );
  try {
    check(
      "posix_spawnattr_setflags",
      backend().fn.posix_spawnattr_setflags(
        attr,
        POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF,
      ),
    );
    // Runtimes ignore SIGPIPE and the like; the new program starts clean.
    check(
      "posix_spawnattr_setsigmask",
      backend().fn.posix_spawnattr_setsigmask(
        attr,
        new Uint8Array(SIGSET_SIZE),
      ),
    );
    check(
      "posix_spawnattr_setsigdefault",
      backend().fn.posix_spawnattr_setsigdefault(attr, catchableSignals()),
    );
    for (const [from, to] of options.dup2 ?? []) {
      check(
        "posix_spawn_file_actions_adddup2",
        backend().fn.posix_spawn_file_actions_adddup2(actions, from, to),
      );
    }
    const pid = new Int32Array(1);
    const r = backend().fn.posix_spawnp(
      new Uint8Array(pid.buffer),
      file,
      actions,
      attr,
      argv.array,
      env.array,
    );
    if (r !== 0) throw syscallError("posix_spawnp", r, options.file);
    return pid[0];
  } finally {
    backend().fn.posix_spawn_file_actions_destroy(actions);
    backend().fn.posix_spawnattr_destroy(attr);
    // Referenced here so that no buffer is collected before the call.
    void [argv.strings, env.strings];
  }
}

/** A child that ended: its pid and how it ended. */
export type Reaped = ExitStatus & { pid: number };

/**
 * Reaps the child `pid` (any child for -1) if it has ended and returns how
 * it ended; `null` if it still runs. Throws `ECHILD` if there is no such
 * unreaped child.
 */
export function reapChild(pid: number): Reaped | null {
  const status = new Int32Array(1);
  const r = libc.waitpid(pid, new Uint8Array(status.buffer), WNOHANG);
  if (r === 0) return null;
  const termination = status[0] & 0x7f;
  return termination === 0
    ? { pid: r, code: (status[0] >> 8) & 0xff }
    : { pid: r, signal: termination };
}

/** Sends `signal` (a number) to `pid`; returns false if no such process exists. */
export function sendSignal(pid: number, signal: number): boolean {
  return call("kill", [pid, signal], {
    detail: `pid ${pid}`,
    unless: Errno.ESRCH,
  }) !== null;
}

function check(name: string, r: number): void {
  if (r !== 0) throw syscallError(name, r);
}

/** A NULL-terminated array of pointers to `strings`. */
function pointerArray(
  strings: Uint8Array[],
): { array: Uint8Array; strings: Uint8Array[] } {
  const array = new BigUint64Array(strings.length + 1);
  strings.forEach((s, i) => array[i] = backend().addressOf(s));
  return { array: new Uint8Array(array.buffer), strings };
}

/**
 * Every signal (1–64, the real-time ones and glibc's internal 32 and 33
 * included) but SIGKILL and SIGSTOP, whose action cannot change.
 */
function catchableSignals(): Uint8Array {
  const set = new Uint8Array(SIGSET_SIZE);
  for (let signal = 1; signal <= 64; signal++) {
    if (signal === 9 || signal === 19) continue;
    set[(signal - 1) >> 3] |= 1 << ((signal - 1) & 7);
  }
  return set;
}
