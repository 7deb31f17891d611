/**
 * The Deno backend: libc through `Deno.dlopen`.
 *
 * @module
 */
import type {
  Backend,
  BindSymbols,
  BoundFunction,
  CSignature,
  CType,
  PtrArg,
} from "./libc.ts";

/**
 * Buffers are passed as pointers taken at each call (`pointerTo` below):
 * binding a function with `"buffer"` parameters costs Deno nearly twice as
 * much, about 4 ms more for the functions every process binds at start.
 */
const DENO_TYPES = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  ptr: "pointer",
  void: "void",
} as const satisfies Record<CType, Deno.NativeType | "void">;

/** The functions the backend itself uses, beside the table's. */
const HELPERS = {
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  getenv: { parameters: ["pointer"], result: "pointer" },
  // memset(buf, 0, 0) writes nothing and returns buf: its address, for
  // pointerTo. The one function bound with a "buffer" parameter (0.3 ms).
  memset: { parameters: ["buffer", "i32", "usize"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** Turns a buffer into a pointer for a `"pointer"` parameter. */
type PointerTo = (buf: PtrArg) => Deno.PointerValue;

/** `f`, taking buffers where `sig` has pointers. */
function takingBuffers(
  f: BoundFunction,
  sig: CSignature,
  pointerTo: PointerTo,
): BoundFunction {
  const pointers = sig.args.flatMap((type, i) => type === "ptr" ? [i] : []);
  if (pointers.length === 0) return f;
  const call = f as (...args: unknown[]) => number | bigint;
  return ((...args: unknown[]) => {
    for (const i of pointers) args[i] = pointerTo(args[i] as PtrArg);
    return call(...args);
  }) as BoundFunction;
}

/**
 * Opens libc with `Deno.dlopen` (needs `--allow-ffi`); `bindSymbols` makes
 * the functions of the table.
 */
export function openBackend(
  libcPath: string,
  bindSymbols: BindSymbols,
): Backend {
  // The helpers come with the first functions bound: every extra dlopen
  // handle costs Deno about 0.3 MiB.
  let raw: Deno.DynamicLibrary<typeof HELPERS>["symbols"] | undefined;
  /**
   * The address of `buf`'s first byte; NULL for `null` (and for an empty
   * buffer). Taken with `memset` rather than `Deno.UnsafePointer.of`, which
   * ties each buffer to the pointer it makes in a `WeakMap` that only a full
   * garbage collection clears: a pointer per call kept the buffers and
   * pointers of thousands of calls alive, and a flood of refused control
   * connections grew a Deno owner by over 100 MiB. The caller holds `buf`
   * until the call returns, so the pointer need not; Deno keeps no typed
   * array inside its heap, so the address does not move.
   */
  const pointerTo: PointerTo = (buf) =>
    buf === null ? null : raw!.memset(buf, 0, 0n);
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
    const bound = symbols as unknown as Record<string, BoundFunction>;
    return Object.fromEntries(
      functions.map((
        [name, sig],
      ) => [name, takingBuffers(bound[name], sig, pointerTo)]),
    );
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
      const value = helpers.getenv(pointerTo(name)) as
        | Deno.PointerObject
        | null;
      return value === null
        ? undefined
        : Deno.UnsafePointerView.getCString(value);
    },
    addressOf: (buf) => BigInt(Deno.UnsafePointer.value(pointerTo(buf))),
  };
}
