/**
 * The few process facilities that Deno and Bun expose differently: the
 * environment (Bun keeps its own copy apart from libc's, which its child
 * processes inherit) and signal listeners.
 *
 * @module
 */
import { backend, cString } from "./libc.ts";
import { catchesSignal } from "./proc.ts";

/** Bun's (and Node's) `process`, as far as this module uses it. */
interface NodeLikeProcess {
  env: Record<string, string | undefined>;
  on(signal: string, listener: () => void): void;
  off(signal: string, listener: () => void): void;
  listeners(signal: string): (() => void)[];
}

/** Deno's namespace, as far as this module uses it. */
interface DenoLike {
  env: { toObject(): Record<string, string>; delete(name: string): void };
  permissions: {
    querySync(descriptor: { name: "env"; variable: string }): {
      state: string;
    };
  };
  addSignalListener(signal: SignalName, listener: () => void): void;
  removeSignalListener(signal: SignalName, listener: () => void): void;
}

const deno = (globalThis as { Deno?: DenoLike }).Deno;
// Read from the global, never imported, and only where there is no Deno: on
// Deno, reading the `process` global loads the Node compatibility layer.
const nodeProcess = deno
  ? undefined
  : (globalThis as { process?: NodeLikeProcess }).process;

/** A signal that {@linkcode onSignal} can listen to. */
export type SignalName =
  | "SIGHUP"
  | "SIGINT"
  | "SIGTERM"
  | "SIGUSR1"
  | "SIGUSR2";

/**
 * The environment as the runtime sees it, which is what a child started now
 * should get. On Deno it needs `--allow-env` (the whole environment is read).
 *
 * @example
 * ```ts
 * import { environment } from "./mod.ts";
 * console.log(environment().PATH);
 * ```
 */
export function environment(): Record<string, string> {
  if (deno) return deno.env.toObject();
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(nodeProcess!.env)) {
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/**
 * The variable `name`, or `undefined`: on Deno from libc's environment,
 * which is Deno's too and needs no `--allow-env`; on Bun from
 * `process.env`, which Bun keeps apart from libc's.
 */
export function getEnv(name: string): string | undefined {
  return deno ? backend().getenv(cString(name)) : nodeProcess!.env[name];
}

/**
 * Removes the variable `name` from this process's environment through the
 * runtime, which changes it under its own lock (libc's `unsetenv` behind a
 * multi-threaded runtime's back is not safe). On Deno that takes
 * `--allow-env`; without it the variable stays, and `false` says so.
 */
export function deleteEnv(name: string): boolean {
  if (!deno) {
    delete nodeProcess!.env[name];
    return true;
  }
  const granted = deno.permissions.querySync({ name: "env", variable: name });
  if (granted.state !== "granted") return false;
  deno.env.delete(name);
  return true;
}

/**
 * Calls `listener` on every `signal` until the returned function is called.
 * The listener replaces the signal's default action (for `SIGHUP`:
 * terminating the process) while it is registered.
 *
 * @example
 * ```ts ignore
 * const stop = onSignal("SIGHUP", () => console.error("reload"));
 * // later
 * stop();
 * ```
 */
export function onSignal(signal: SignalName, listener: () => void): () => void {
  if (deno) {
    deno.addSignalListener(signal, listener);
    return () => deno.removeSignalListener(signal, listener);
  }
  nodeProcess!.on(signal, listener);
  return () => {
    nodeProcess!.off(signal, listener);
    keepCaught(signal);
  };
}

/** The numbers of the signals {@linkcode onSignal} takes (the same on every Linux ABI tableroll runs on). */
const SIGNAL_NUMBERS: Record<SignalName, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
};

/**
 * Bun before 1.3 drops its handler of a signal when any one of its
 * listeners is removed, and the next such signal takes its default action
 * (for most: terminating the process) although listeners remain. If that
 * happened, adding a remaining listener again installs the handler again.
 */
function keepCaught(signal: SignalName): void {
  const [remaining] = nodeProcess!.listeners(signal);
  if (!remaining || catchesSignal(SIGNAL_NUMBERS[signal])) return;
  nodeProcess!.off(signal, remaining);
  nodeProcess!.on(signal, remaining);
}
