/**
 * The libc functions the FFI layer calls, described once in runtime-neutral
 * types. Each backend turns this table into its runtime's `dlopen` form.
 *
 * Pointer parameters take a `Uint8Array` (or `null` for NULL); every result is
 * returned as a JavaScript number. `open`, `fcntl` and `syscall` are variadic
 * in C; they are declared with their fixed integer arguments, which is how both x86_64
 * and aarch64 pass them.
 *
 * @module
 */

/** A C type as the backends understand it. */
export type CType = "i32" | "u32" | "i64" | "u64" | "ptr" | "void";

/** One function: parameter types and result type. */
export interface CSignature {
  /** Parameter types, in order. */
  readonly args: readonly CType[];
  /** Result type. */
  readonly result: CType;
  /**
   * Not called while a process starts, takes over or serves (spawning,
   * draining helpers, tests): the backends bind it on first call. Binding a
   * function costs Deno about 0.15 ms and Bun about 0.1 MiB, which every
   * process would pay at import for all of them.
   */
  readonly rare?: true;
}

/** Every libc function the layer uses. */
export const SYMBOLS = {
  socket: { args: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { args: ["i32", "i32", "i32", "ptr"], result: "i32", rare: true },
  bind: { args: ["i32", "ptr", "u32"], result: "i32" },
  listen: { args: ["i32", "i32"], result: "i32" },
  shutdown: { args: ["i32", "i32"], result: "i32", rare: true },
  accept4: { args: ["i32", "ptr", "ptr", "i32"], result: "i32" },
  connect: { args: ["i32", "ptr", "u32"], result: "i32" },
  getsockname: { args: ["i32", "ptr", "ptr"], result: "i32" },
  getpeername: { args: ["i32", "ptr", "ptr"], result: "i32", rare: true },
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], result: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], result: "i32" },
  sendmsg: { args: ["i32", "ptr", "i32"], result: "i64" },
  recvmsg: { args: ["i32", "ptr", "i32"], result: "i64" },
  open: { args: ["ptr", "i32", "u32"], result: "i32" },
  read: { args: ["i32", "ptr", "u64"], result: "i64" },
  write: { args: ["i32", "ptr", "u64"], result: "i64" },
  close: { args: ["i32"], result: "i32" },
  unlink: { args: ["ptr"], result: "i32" },
  rename: { args: ["ptr", "ptr"], result: "i32", rare: true },
  readlink: { args: ["ptr", "ptr", "u64"], result: "i64" },
  fstat: { args: ["i32", "ptr"], result: "i32" },
  getdents64: { args: ["i32", "ptr", "u64"], result: "i64" },
  flock: { args: ["i32", "i32"], result: "i32" },
  fcntl: { args: ["i32", "i32", "i64"], result: "i32" },
  dup3: { args: ["i32", "i32", "i32"], result: "i32" },
  pipe2: { args: ["ptr", "i32"], result: "i32", rare: true },
  poll: { args: ["ptr", "u64", "i32"], result: "i32" },
  epoll_create1: { args: ["i32"], result: "i32", rare: true },
  epoll_ctl: { args: ["i32", "i32", "i32", "ptr"], result: "i32" },
  eventfd: { args: ["u32", "i32"], result: "i32", rare: true },
  memfd_create: { args: ["ptr", "u32"], result: "i32", rare: true },
  getpid: { args: [], result: "i32" },
  clock_gettime: { args: ["i32", "ptr"], result: "i32", rare: true },
  getuid: { args: [], result: "u32" },
  syscall: { args: ["i64", "i64", "i64"], result: "i64" },
  kill: { args: ["i32", "i32"], result: "i32", rare: true },
  waitpid: { args: ["i32", "ptr", "i32"], result: "i32", rare: true },
  posix_spawnp: {
    args: ["ptr", "ptr", "ptr", "ptr", "ptr", "ptr"],
    result: "i32",
    rare: true,
  },
  posix_spawnattr_init: { args: ["ptr"], result: "i32", rare: true },
  posix_spawnattr_setflags: { args: ["ptr", "i32"], result: "i32", rare: true },
  posix_spawnattr_setsigmask: {
    args: ["ptr", "ptr"],
    result: "i32",
    rare: true,
  },
  posix_spawnattr_setsigdefault: {
    args: ["ptr", "ptr"],
    result: "i32",
    rare: true,
  },
  posix_spawnattr_destroy: { args: ["ptr"], result: "i32", rare: true },
  posix_spawn_file_actions_init: { args: ["ptr"], result: "i32", rare: true },
  posix_spawn_file_actions_adddup2: {
    args: ["ptr", "i32", "i32"],
    result: "i32",
    rare: true,
  },
  posix_spawn_file_actions_destroy: {
    args: ["ptr"],
    result: "i32",
    rare: true,
  },
} as const satisfies Record<string, CSignature>;

/** Names of the functions in {@linkcode SYMBOLS}. */
export type SymbolName = keyof typeof SYMBOLS;

/** A pointer argument: a buffer, or `null` for NULL. */
export type PtrArg = Uint8Array | null;

/** JavaScript arguments for parameter types `A`: a {@linkcode PtrArg} per pointer, else a number. */
export type JsArgs<A extends readonly CType[]> = {
  [K in keyof A]: A[K] extends "ptr" ? PtrArg : number;
};

/** The JavaScript signature of every libc function, as both backends expose it. */
export type LibcFunctions = {
  [K in SymbolName]: (...args: JsArgs<typeof SYMBOLS[K]["args"]>) => number;
};

/** A function as a runtime's `dlopen` returns it; 64-bit results may be BigInt. */
export type BoundFunction = (...args: never[]) => number | bigint;

/**
 * The functions of {@linkcode SYMBOLS}, results as numbers, from a backend's
 * `bind`, which opens libc for the given functions and returns them by name.
 * All but the rare ones are bound at once, in one call (one by one they cost
 * more); each rare one is bound on its first use.
 */
export function bindSymbols(
  bind: (
    functions: readonly [string, CSignature][],
  ) => Record<string, BoundFunction>,
): LibcFunctions {
  const entries = Object.entries(SYMBOLS) as [string, CSignature][];
  const asNumbers = (f: BoundFunction, sig: CSignature) => {
    const g = f as (...a: unknown[]) => number | bigint;
    return sig.result === "i64"
      ? (...a: unknown[]) => Number(g(...a))
      : g as (...a: unknown[]) => number;
  };
  const fn: Record<string, (...a: unknown[]) => number> = {};
  const common = entries.filter(([, sig]) => !sig.rare);
  const bound = bind(common);
  for (const [name, sig] of common) fn[name] = asNumbers(bound[name], sig);
  for (const [name, sig] of entries.filter(([, sig]) => sig.rare)) {
    Object.defineProperty(fn, name, {
      configurable: true,
      enumerable: true,
      get() {
        const value = asNumbers(bind([[name, sig]])[name], sig);
        Object.defineProperty(fn, name, { value, enumerable: true });
        return value;
      },
    });
  }
  return fn as LibcFunctions;
}

/**
 * What each runtime backend provides: the functions above, errno of the
 * calling thread, and the few operations on raw memory that differ per runtime.
 */
export interface Backend {
  /** `"deno"` or `"bun"`. */
  readonly runtime: "deno" | "bun";
  /** The libc functions, results as numbers. */
  readonly fn: LibcFunctions;
  /** errno of the calling thread; read it right after the failing call. */
  errno(): number;
  /** `strerror(errno)`. */
  strerror(errno: number): string;
  /** `getenv(name)`, `name` NUL-terminated: libc's environment, which needs no Deno permission. */
  getenv(name: Uint8Array): string | undefined;
  /** The address of `buf`'s first byte, to store in a struct. */
  addressOf(buf: Uint8Array): bigint;
}
