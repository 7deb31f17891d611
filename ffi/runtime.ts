/**
 * The few process facilities that Deno and Bun expose differently and libc
 * cannot stand in for: the runtime's view of the environment (what its own
 * child processes inherit) and signal listeners.
 *
 * @module
 */

/** Bun's (and Node's) `process`, as far as this module uses it. */
interface NodeLikeProcess {
  env: Record<string, string | undefined>;
  on(signal: string, listener: () => void): void;
  off(signal: string, listener: () => void): void;
}

/** Deno's namespace, as far as this module uses it. */
interface DenoLike {
  env: {
    toObject(): Record<string, string>;
    get(name: string): string | undefined;
    delete(name: string): void;
  };
  addSignalListener(signal: SignalName, listener: () => void): void;
  removeSignalListener(signal: SignalName, listener: () => void): void;
}

const deno = (globalThis as { Deno?: DenoLike }).Deno;
// Read from the global, never imported: no `node:` module is loaded on Deno.
const nodeProcess = (globalThis as { process?: NodeLikeProcess }).process;

/** A signal that {@linkcode onSignal} can listen to. */
export type SignalName =
  | "SIGHUP"
  | "SIGINT"
  | "SIGTERM"
  | "SIGUSR1"
  | "SIGUSR2";

/**
 * The environment as the runtime sees it, which is what a child started now
 * should get. On Deno it needs `--allow-env`.
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

/** The variable `name`, or `undefined`. */
export function getEnv(name: string): string | undefined {
  return deno ? deno.env.get(name) : nodeProcess!.env[name];
}

/** Removes the variable `name` from this process's environment. */
export function deleteEnv(name: string): void {
  if (deno) deno.env.delete(name);
  else delete nodeProcess!.env[name];
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
  return () => nodeProcess!.off(signal, listener);
}
