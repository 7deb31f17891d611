/**
 * Opens the runtime's backend and wraps every libc function so that a
 * failing call throws a {@linkcode SyscallError}.
 *
 * @module
 */
import { layoutFor } from "./platform.ts";
import type { Layout } from "./platform.ts";
import { SyscallError } from "./errors.ts";
import { type Backend, type LibcFunctions, SYMBOLS } from "./symbols.ts";
import type { SymbolName } from "./symbols.ts";
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

// The running runtime's backend module is loaded with this one (Bun's
// imports `bun:ffi`, which Deno cannot); libc itself is opened only at the
// first call that needs it, so importing the library needs no permission.
const opener = "Deno" in globalThis
  ? await import("./backend_deno.ts")
  : "Bun" in globalThis
  ? await import("./backend_bun.ts")
  : undefined;

let opened: Backend | undefined;
let platformLayout: Layout | undefined;

/**
 * The struct layout of the running architecture; throws
 * `UnsupportedPlatformError` on another OS or architecture.
 */
export function layout(): Layout {
  return platformLayout ??= layoutFor(platform().os, platform().arch);
}

/** The raw backend of the running runtime, libc opened on first use. */
export function backend(): Backend {
  if (opened) return opened;
  if (!opener) {
    throw new Error(
      "tableroll's FFI layer needs Deno (with --allow-ffi) or Bun; this runtime has neither FFI",
    );
  }
  layout(); // refuses an unsupported platform before anything is opened
  return opened = opener.openBackend(LIBC_PATH);
}

/**
 * The libc functions, checked: a negative result throws a
 * {@linkcode SyscallError} carrying errno, read immediately after the call.
 * `EINTR` is retried (not by `close`). For a failure the caller expects, or
 * a message that names a path or an address, use {@linkcode call}.
 */
export const libc: LibcFunctions = Object.fromEntries(
  (Object.keys(SYMBOLS) as SymbolName[]).map((name) => [
    name,
    (...args: unknown[]) =>
      call(name, args as Parameters<LibcFunctions[typeof name]>)!,
  ]),
) as unknown as LibcFunctions;

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
  const native = backend();
  const f = native.fn[name] as (...a: unknown[]) => number;
  for (;;) {
    const r = f(...args);
    if (r >= 0) return r;
    const errno = native.errno();
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
      native.strerror(errno),
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
  return new SyscallError(name, errno, backend().strerror(errno), detail);
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
