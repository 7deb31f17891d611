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
import { SYMBOLS } from "./symbols.ts";
import type { Backend, CSignature, CType, LibcFunctions } from "./symbols.ts";

const BUN_TYPES = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  ptr: "ptr",
  void: "void",
} as const satisfies Record<CType, FFITypeOrString>;

/** Opens libc with `bun:ffi`. */
export function openBackend(libcPath: string): Backend {
  const lib = dlopen(libcPath, {
    __errno_location: { args: [], returns: "ptr" },
    strerror: { args: ["i32"], returns: "cstring" },
    getenv: { args: ["ptr"], returns: "cstring" },
  });
  const definition = (sig: CSignature): FFIFunction => ({
    args: sig.args.map((t) => BUN_TYPES[t]),
    returns: BUN_TYPES[sig.result],
  });
  // The table is built at run time, so Bun cannot type each symbol; the
  // signatures in SYMBOLS are what `LibcFunctions` promises. Bun returns
  // 64-bit integers as BigInt.
  const wrap = (f: unknown, sig: CSignature) => {
    const g = f as (...a: unknown[]) => number | bigint;
    return sig.result === "i64"
      ? (...a: unknown[]) => Number(g(...a))
      : g as (...a: unknown[]) => number;
  };
  const entries = Object.entries(SYMBOLS) as [string, CSignature][];
  const table: Record<string, FFIFunction> = {};
  for (const [name, sig] of entries) {
    if (!sig.rare) table[name] = definition(sig);
  }
  const raw = dlopen(libcPath, table).symbols;
  const fn: Record<string, (...a: unknown[]) => number> = {};
  for (const [name, sig] of entries) {
    if (!sig.rare) fn[name] = wrap(raw[name], sig);
    else {
      // Compiled on first use: each compiled function holds memory.
      Object.defineProperty(fn, name, {
        configurable: true,
        enumerable: true,
        get() {
          const symbols = dlopen(libcPath, { [name]: definition(sig) })
            .symbols;
          const bound = wrap(symbols[name], sig);
          Object.defineProperty(fn, name, { value: bound, enumerable: true });
          return bound;
        },
      });
    }
  }
  // errno lives at a fixed address per thread; all calls run on this thread.
  const errnoAddress = lib.symbols.__errno_location();
  if (errnoAddress === null) throw new Error("__errno_location returned NULL");
  return {
    runtime: "bun",
    fn: fn as LibcFunctions,
    errno: () => read.i32(errnoAddress, 0),
    strerror: (errno) => lib.symbols.strerror(errno) ?? `errno ${errno}`,
    getenv: (name) => {
      const value = lib.symbols.getenv(name);
      return value === null ? undefined : String(value);
    },
    addressOf: (buf) => BigInt(ptr(buf)),
  };
}
