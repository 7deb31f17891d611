/**
 * Opens the runtime's backend and wraps every libc function so that a
 * failing call throws a {@linkcode SyscallError}.
 *
 * @module
 */
import { openBackend as openDeno } from "./backend_deno.ts";
import { layoutFor } from "./platform.ts";
import type { Layout } from "./platform.ts";
import { SyscallError } from "./errors.ts";
import type { Backend, LibcFunctions, SymbolName } from "./symbols.ts";
import { Errno } from "./errno.ts";

const LIBC_PATH = "libc.so.6";

/** The architecture names of `layoutFor`, from Node's (`x64`, `arm64`). */
const ARCH_NAMES: Record<string, string> = { x64: "x86_64", arm64: "aarch64" };

/** The running OS and architecture, read without Deno's Node compatibility layer. */
function platform(): { os: string; arch: string } {
  if ("Deno" in globalThis) return Deno.build;
  const { platform, arch } = (globalThis as unknown as {
    process: { platform: string; arch: string };
  }).process;
  return { os: platform, arch: ARCH_NAMES[arch] ?? arch };
}

async function loadBackend(): Promise<Backend> {
  if ("Deno" in globalThis) return openDeno(LIBC_PATH);
  if ("Bun" in globalThis) {
    const { openBackend } = await import("./backend_bun.ts");
    return openBackend(LIBC_PATH);
  }
  throw new Error(
    "tableroll's FFI layer needs Deno (with --allow-ffi) or Bun; this runtime has neither FFI",
  );
}

/** The struct layout of the running architecture. */
export const layout: Layout = layoutFor(platform().os, platform().arch);

/** The raw backend of the running runtime. */
export const backend: Backend = await loadBackend();

/**
 * The libc functions, checked: a negative result throws a
 * {@linkcode SyscallError} carrying errno, read immediately after the call.
 * `EINTR` is retried (not by `close`). For a failure the caller expects, or a message that
 * names a path or an address, use {@linkcode call}.
 */
export const libc: LibcFunctions = checkAll(backend);

function checkAll(b: Backend): LibcFunctions {
  const checked: Record<string, (...a: unknown[]) => number> = {};
  for (const name of Object.keys(b.fn) as SymbolName[]) {
    checked[name] = (...args) =>
      call(name, args as Parameters<LibcFunctions[typeof name]>)!;
  }
  return checked as LibcFunctions;
}

/** Options of {@linkcode call}. */
export interface CallOptions {
  /** The name the error gives the call (default `name`), e.g. for `syscall`. */
  syscall?: string;
  /** What the call was about (a path, an address), put in the error message. */
  detail?: string;
  /** An errno the caller expects: the call returns `null` instead of throwing. */
  unless?: number;
}

/**
 * Calls the libc function `name` the one checked way: its result if it
 * succeeded, `null` if it failed with `options.unless`, else a
 * {@linkcode SyscallError} (errno read right after the call). `EINTR` is
 * retried, except by `close`.
 *
 * @example
 * ```ts ignore
 * const removed = call("unlink", [cString(path)], { unless: Errno.ENOENT }) !== null;
 * ```
 */
export function call<N extends SymbolName>(
  name: N,
  args: Parameters<LibcFunctions[N]>,
  options: CallOptions = {},
): number | null {
  const f = backend.fn[name] as (...a: unknown[]) => number;
  for (;;) {
    const r = f(...args);
    if (r >= 0) return r;
    const errno = backend.errno();
    if (errno === Errno.EINTR) {
      // On Linux close(2) releases the descriptor even then; a retry could
      // close one that another thread has just been given.
      if (name === "close") return 0;
      continue;
    }
    if (errno === options.unless) return null;
    throw new SyscallError(
      options.syscall ?? name,
      errno,
      backend.strerror(errno),
      options.detail,
    );
  }
}

/**
 * A {@linkcode SyscallError} for `errno`, for the calls that return the error
 * number instead of setting errno (`posix_spawn` and its helpers); every other
 * call goes through {@linkcode call}.
 */
export function syscallError(
  name: string,
  errno: number,
  detail?: string,
): SyscallError {
  return new SyscallError(name, errno, backend.strerror(errno), detail);
}

/** NUL-terminated UTF-8 bytes of `s`, for path arguments. */
export function cString(s: string): Uint8Array {
  const bytes = new TextEncoder().encode(s);
  if (bytes.includes(0)) {
    throw new TypeError(`path contains a NUL byte: ${JSON.stringify(s)}`);
  }
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}
