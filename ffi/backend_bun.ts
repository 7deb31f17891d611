/**
 * The Bun backend: libc through `bun:ffi`.
 *
 * Only Bun loads this module (`libc.ts` imports it dynamically under Bun), so
 * the static `bun:ffi` import never reaches Deno. `.ci/check` type-checks it
 * against the real Bun types.
 *
 * @module
 */
import {
  dlopen,
  type FFIFunction,
  type FFITypeOrString,
  ptr,
  read,
} from "bun:ffi";
import type { Backend, BindSymbols, BoundFunction, CType } from "./libc.ts";

const BUN_TYPES = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  ptr: "ptr",
  void: "void",
} as const satisfies Record<CType, FFITypeOrString>;

/** Opens libc with `bun:ffi`; `bindSymbols` makes the functions of the table. */
export function openBackend(
  libcPath: string,
  bindSymbols: BindSymbols,
): Backend {
  const lib = dlopen(libcPath, {
    __errno_location: { args: [], returns: "ptr" },
    strerror: { args: ["i32"], returns: "cstring" },
    getenv: { args: ["ptr"], returns: "cstring" },
  });
  // The table is built at run time, so Bun cannot type each symbol; the
  // signatures in SYMBOLS are what `LibcFunctions` promises.
  const fn = bindSymbols((functions) =>
    dlopen(
      libcPath,
      Object.fromEntries(
        functions.map(([name, sig]): [string, FFIFunction] => [name, {
          args: sig.args.map((t) => BUN_TYPES[t]),
          returns: BUN_TYPES[sig.result],
        }]),
      ),
    ).symbols as unknown as Record<string, BoundFunction>
  );
  // errno lives at a fixed address per thread; all calls run on this thread.
  const errnoAddress = lib.symbols.__errno_location();
  if (errnoAddress === null) throw new Error("__errno_location returned NULL");
  return {
    runtime: "bun",
    fn,
    errno: () => read.i32(errnoAddress, 0),
    strerror: (errno) => lib.symbols.strerror(errno) ?? `errno ${errno}`,
    getenv: (name) => {
      const value = lib.symbols.getenv(name);
      return value === null ? undefined : String(value);
    },
    addressOf: (buf) => BigInt(ptr(buf)),
  };
}
