/**
 * The Deno backend: libc through `Deno.dlopen`.
 *
 * @module
 */
import { SYMBOLS } from "./symbols.ts";
import type { Backend, CType, LibcFunctions } from "./symbols.ts";

const DENO_TYPES = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  ptr: "buffer",
  void: "void",
} as const satisfies Record<CType, Deno.NativeType | "void">;

/** Opens libc with `Deno.dlopen` (needs `--allow-ffi`). */
export function openBackend(libcPath: string): Backend {
  const definitions: Record<string, Deno.ForeignFunction> = {
    __errno_location: { parameters: [], result: "pointer" },
    strerror: { parameters: ["i32"], result: "pointer" },
    getenv: { parameters: ["buffer"], result: "pointer" },
  };
  for (const [name, sig] of Object.entries(SYMBOLS)) {
    definitions[name] = {
      parameters: sig.args.map((t) => DENO_TYPES[t] as Deno.NativeType),
      result: DENO_TYPES[sig.result],
    };
  }
  const lib = Deno.dlopen(libcPath, definitions);
  // deno-lint-ignore no-explicit-any
  const raw = lib.symbols as Record<string, (...a: any[]) => any>;
  const fn: Record<string, (...a: unknown[]) => number> = {};
  for (const [name, sig] of Object.entries(SYMBOLS)) {
    const f = raw[name];
    fn[name] = sig.result === "i64" ? (...a) => Number(f(...a)) : f;
  }
  // errno lives at a fixed address per thread; all calls run on this thread.
  const errnoView = new Deno.UnsafePointerView(
    raw.__errno_location() as Deno.PointerObject,
  );
  return {
    runtime: "deno",
    fn: fn as LibcFunctions,
    errno: () => errnoView.getInt32(0),
    strerror: (errno) =>
      Deno.UnsafePointerView.getCString(
        raw.strerror(errno) as Deno.PointerObject,
      ),
    getenv: (name) => {
      const value = raw.getenv(name) as Deno.PointerObject | null;
      return value === null
        ? undefined
        : Deno.UnsafePointerView.getCString(value);
    },
    addressOf: (buf) =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))),
  };
}
