/**
 * The Deno backend: libc through `Deno.dlopen`.
 *
 * @module
 */
import { SYMBOLS } from "./symbols.ts";
import type { Backend, CSignature, CType, LibcFunctions } from "./symbols.ts";

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
  const definition = (sig: CSignature): Deno.ForeignFunction => ({
    parameters: sig.args.map((t) => DENO_TYPES[t] as Deno.NativeType),
    result: DENO_TYPES[sig.result],
  });
  const definitions: Record<string, Deno.ForeignFunction> = {
    __errno_location: { parameters: [], result: "pointer" },
    strerror: { parameters: ["i32"], result: "pointer" },
    getenv: { parameters: ["buffer"], result: "pointer" },
  };
  const rare: [string, CSignature][] = [];
  for (const [name, sig] of Object.entries(SYMBOLS) as [string, CSignature][]) {
    if (sig.rare) rare.push([name, sig]);
    else definitions[name] = definition(sig);
  }
  // deno-lint-ignore no-explicit-any
  type Raw = Record<string, (...a: any[]) => any>;
  const raw = Deno.dlopen(libcPath, definitions).symbols as Raw;
  const wrap = (f: Raw[string], sig: CSignature) =>
    sig.result === "i64" ? (...a: unknown[]) => Number(f(...a)) : f;
  const fn: Record<string, (...a: unknown[]) => number> = {};
  for (const [name, sig] of Object.entries(SYMBOLS) as [string, CSignature][]) {
    if (!sig.rare) fn[name] = wrap(raw[name], sig);
  }
  // The rare ones are bound on first use, each through its own handle.
  for (const [name, sig] of rare) {
    Object.defineProperty(fn, name, {
      configurable: true,
      enumerable: true,
      get() {
        const symbols = Deno.dlopen(libcPath, { [name]: definition(sig) })
          .symbols as Raw;
        const bound = wrap(symbols[name], sig);
        Object.defineProperty(fn, name, { value: bound, enumerable: true });
        return bound;
      },
    });
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
