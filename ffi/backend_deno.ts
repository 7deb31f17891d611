/**
 * The Deno backend: libc through `Deno.dlopen`.
 *
 * @module
 */
import { bindSymbols } from "./symbols.ts";
import type { Backend, BoundFunction, CType } from "./symbols.ts";

const DENO_TYPES = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  ptr: "buffer",
  void: "void",
} as const satisfies Record<CType, Deno.NativeType | "void">;

/** The functions the backend itself uses, beside the table's. */
const HELPERS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  getenv: { parameters: ["buffer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Opens libc with `Deno.dlopen` (needs `--allow-ffi`). */
export function openBackend(libcPath: string): Backend {
  // The helpers come with the first functions bound: every extra dlopen
  // handle costs Deno about 0.3 MiB.
  let raw: Deno.DynamicLibrary<typeof HELPERS>["symbols"] | undefined;
  const fn = bindSymbols((functions) => {
    const symbols = Deno.dlopen(libcPath, {
      ...(raw ? {} : HELPERS),
      ...Object.fromEntries(
        functions.map(([name, sig]): [string, Deno.ForeignFunction] => [name, {
          parameters: sig.args.map((t) => DENO_TYPES[t] as Deno.NativeType),
          result: DENO_TYPES[sig.result],
        }]),
      ),
    }).symbols;
    raw ??= symbols as unknown as typeof raw;
    return symbols as unknown as Record<string, BoundFunction>;
  });
  const helpers = raw!; // set by the first bind, above
  // errno lives at a fixed address per thread; all calls run on this thread.
  const errnoView = new Deno.UnsafePointerView(
    helpers.__errno_location() as Deno.PointerObject,
  );
  return {
    runtime: "deno",
    fn,
    errno: () => errnoView.getInt32(0),
    strerror: (errno) =>
      Deno.UnsafePointerView.getCString(
        helpers.strerror(errno) as Deno.PointerObject,
      ),
    getenv: (name) => {
      const value = helpers.getenv(name) as Deno.PointerObject | null;
      return value === null
        ? undefined
        : Deno.UnsafePointerView.getCString(value);
    },
    addressOf: (buf) =>
      BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))),
  };
}
