/**
 * The Bun backend: libc through `bun:ffi`.
 *
 * `bun:ffi` is imported dynamically so that Deno can load and type-check this
 * module; {@linkcode BunFfi} types the part of it that is used.
 *
 * @module
 */
import { SYMBOLS } from "./symbols.ts";
import type { Backend, CType, LibcFunctions } from "./symbols.ts";

/** The subset of `bun:ffi` this backend uses. */
export interface BunFfi {
  dlopen(
    path: string,
    symbols: Record<string, { args: string[]; returns: string }>,
  ): { symbols: Record<string, (...args: unknown[]) => unknown> };
  ptr(buf: Uint8Array): number;
  read: { i32(ptr: number, offset: number): number };
  CString: new (ptr: number) => { toString(): string };
}

const BUN_TYPES: Record<CType, string> = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  ptr: "ptr",
  void: "void",
};

/** Opens libc with `bun:ffi`. */
export async function openBackend(libcPath: string): Promise<Backend> {
  const ffi = await import("bun:" + "ffi") as BunFfi;
  const definitions: Record<string, { args: string[]; returns: string }> = {
    __errno_location: { args: [], returns: "ptr" },
    strerror: { args: ["i32"], returns: "ptr" },
  };
  for (const [name, sig] of Object.entries(SYMBOLS)) {
    definitions[name] = {
      args: sig.args.map((t) => BUN_TYPES[t]),
      returns: BUN_TYPES[sig.result],
    };
  }
  const raw = ffi.dlopen(libcPath, definitions).symbols;
  const fn: Record<string, (...a: unknown[]) => number> = {};
  for (const [name, sig] of Object.entries(SYMBOLS)) {
    const f = raw[name];
    fn[name] = sig.result === "i64"
      ? (...a) => Number(f(...a))
      : f as (...a: unknown[]) => number;
  }
  const errnoPtr = raw.__errno_location() as number;
  return {
    runtime: "bun",
    fn: fn as LibcFunctions,
    errno: () => ffi.read.i32(errnoPtr, 0),
    strerror: (errno) =>
      new ffi.CString(raw.strerror(errno) as number).toString(),
    addressOf: (buf) => BigInt(ffi.ptr(buf)),
  };
}
