/**
 * libc as the layer sees it: the constants and struct layouts of the running
 * platform (they differ per architecture: `epoll_event` is packed on
 * x86_64), the table of the functions it calls, and those functions,
 * checked so that a failing call throws a {@linkcode SyscallError}. The
 * runtime's backend opens libc at the first call that needs it.
 *
 * @module
 */
import { Errno, FfiError, SyscallError } from "./errors.ts";

/** The architectures whose layouts are written down. */
export type Arch = "x86_64" | "aarch64";

/** Offsets and sizes of the structs that the FFI layer reads and writes. */
export interface Layout {
  /** `struct epoll_event`: packed on x86_64 (12 bytes), naturally aligned on aarch64. */
  epollEvent: { size: number; events: number; data: number };
  /** `struct stat` as filled by `fstat`. */
  stat: { size: number; dev: number; ino: number; mode: number; uid: number };
  /** `O_DIRECTORY`, which differs between the two. */
  O_DIRECTORY: number;
  /** `O_NOFOLLOW` (do not follow a final symbolic link), which differs too. */
  O_NOFOLLOW: number;
}

const LAYOUTS: Record<Arch, Layout> = {
  x86_64: {
    epollEvent: { size: 12, events: 0, data: 4 },
    stat: { size: 144, dev: 0, ino: 8, mode: 24, uid: 28 },
    O_DIRECTORY: 0o200000,
    O_NOFOLLOW: 0o400000,
  },
  aarch64: {
    epollEvent: { size: 16, events: 0, data: 8 },
    stat: { size: 128, dev: 0, ino: 8, mode: 16, uid: 24 },
    O_DIRECTORY: 0o40000,
    O_NOFOLLOW: 0o100000,
  },
};

/** Thrown at load time on a platform whose layouts are not written down. */
export class UnsupportedPlatformError extends FfiError {
  static {
    this.prototype.name = "UnsupportedPlatformError";
  }

  /** Creates the error for the platform `os`/`arch`. */
  constructor(os: string, arch: string) {
    super(
      `tableroll's FFI layer supports Linux on x86_64 and aarch64 only, not ${os}/${arch}: ` +
        "descriptor passing and the struct layouts it needs are Linux-specific",
    );
  }
}

/** Returns the layout for `os`/`arch`, or throws {@linkcode UnsupportedPlatformError}. */
export function layoutFor(os: string, arch: string): Layout {
  if (os !== "linux" || !(arch in LAYOUTS)) {
    throw new UnsupportedPlatformError(os, arch);
  }
  return LAYOUTS[arch as Arch];
}

// Shared by every 64-bit Linux architecture.

/** `struct msghdr` (56 bytes). */
export const MSGHDR = {
  size: 56,
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
} as const;
/** `struct iovec` (16 bytes). */
export const IOVEC = { size: 16, base: 0, len: 8 } as const;
/** `struct cmsghdr` header; data starts at offset 16. */
export const CMSGHDR = { size: 16, len: 0, level: 8, type: 12 } as const;
/** `struct pollfd` (8 bytes). */
export const POLLFD = { size: 8, fd: 0, events: 4, revents: 6 } as const;
/** `struct timespec` (16 bytes). */
export const TIMESPEC = { size: 16, sec: 0, nsec: 8 } as const;
/** `struct ucred` (12 bytes). */
export const UCRED = { size: 12, pid: 0, uid: 4, gid: 8 } as const;
/** Size of `struct sockaddr_storage`, enough for any address. */
export const SOCKADDR_STORAGE_SIZE = 128;
/** Bytes of glibc's `posix_spawnattr_t` (336) and `posix_spawn_file_actions_t` (80), rounded up. */
export const SPAWN_STRUCT_SIZE = { attr: 512, fileActions: 128 } as const;
/** Bytes of the kernel-independent `sigset_t` of glibc. */
export const SIGSET_SIZE = 128;
/** `posix_spawnattr_setflags`: reset the signals of the default set to their default action. */
export const POSIX_SPAWN_SETSIGDEF = 0x04;
/** `posix_spawnattr_setflags`: set the signal mask. */
export const POSIX_SPAWN_SETSIGMASK = 0x08;
/** `posix_spawnattr_setflags`: the child starts a new session (`setsid`). */
export const POSIX_SPAWN_SETSID = 0x80;
/** `waitpid(2)`: return at once if no child has changed state. */
export const WNOHANG = 1;

/** Bytes of `sun_path` in `struct sockaddr_un`, including the terminating NUL. */
export const SUN_PATH_SIZE = 108;

/** Bytes of control-message space needed to carry `n` descriptors. */
export function cmsgSpace(n: number): number {
  return CMSGHDR.size + align8(4 * n);
}

/** `CMSG_LEN` for `n` descriptors: header plus data, unpadded. */
export function cmsgLen(n: number): number {
  return CMSGHDR.size + 4 * n;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

// Numeric constants of Linux (the same on x86_64 and aarch64).

/** Address family: Unix domain sockets. */
export const AF_UNIX = 1;
/** Address family: IPv4. */
export const AF_INET = 2;
/** Address family: IPv6. */
export const AF_INET6 = 10;
/** Socket type: byte stream (TCP, Unix stream). */
export const SOCK_STREAM = 1;
/** Socket type: datagrams (UDP, Unix datagram). */
export const SOCK_DGRAM = 2;
/** Socket type: ordered, record-preserving Unix socket. */
export const SOCK_SEQPACKET = 5;
/** `socket(2)` flag: open non-blocking. */
export const SOCK_NONBLOCK = 0o4000;
/** `socket(2)` flag: close on exec. */
export const SOCK_CLOEXEC = 0o2000000;
/** Option level of the socket itself. */
export const SOL_SOCKET = 1;
/** Socket option: allow binding a port in TIME_WAIT. */
export const SO_REUSEADDR = 2;
/** Socket option: the socket type (read-only). */
export const SO_TYPE = 3;
/** Socket option: credentials of a Unix socket's peer. */
export const SO_PEERCRED = 17;
/** Socket option: 1 if the socket is listening. */
export const SO_ACCEPTCONN = 30;
/** Socket option: the address family (read-only). */
export const SO_DOMAIN = 39;
/** Control message type carrying descriptors. */
export const SCM_RIGHTS = 1;
/** `recvmsg` flag: control data (descriptors) was truncated. */
export const MSG_CTRUNC = 0x8;
/** `recvmsg` flag: the data part was truncated. */
export const MSG_TRUNC = 0x20;
/** `sendmsg`/`recvmsg` flag: do not block. */
export const MSG_DONTWAIT = 0x40;
/** `sendmsg` flag: return `EPIPE` instead of raising SIGPIPE. */
export const MSG_NOSIGNAL = 0x4000;
/** `recvmsg` flag: received descriptors are close-on-exec. */
export const MSG_CMSG_CLOEXEC = 0x40000000;
/** `shutdown(2)`: no more receptions. */
export const SHUT_RD = 0;
/** `shutdown(2)`: no more transmissions. */
export const SHUT_WR = 1;
/** `shutdown(2)`: neither. */
export const SHUT_RDWR = 2;

/** `open(2)`: read only. */
export const O_RDONLY = 0;
/** `open(2)`: write only. */
export const O_WRONLY = 1;
/** `open(2)`: read and write. */
export const O_RDWR = 2;
/** `open(2)`: create the file if missing. */
export const O_CREAT = 0o100;
/** `open(2)`: truncate to length 0. */
export const O_TRUNC = 0o1000;
/** `open(2)`/`fcntl(2)` status flag: non-blocking I/O. */
export const O_NONBLOCK = 0o4000;
/** `open(2)`: close on exec. */
export const O_CLOEXEC = 0o2000000;
/** `open(2)`: a descriptor that only names the file (enough for `fstat`), e.g. a socket file. */
export const O_PATH = 0o10000000;
/** `open(2)`/`fcntl(2)`: signal readiness (owner set by `F_SETOWN`, signal by `F_SETSIG`). */
export const O_ASYNC = 0o20000;

/** `fcntl(2)`: read the file status flags. */
export const F_GETFL = 3;
/** `fcntl(2)`: set the file status flags. */
export const F_SETFL = 4;
/** `fcntl(2)`: set the process that receives readiness signals for the open file description. */
export const F_SETOWN = 8;
/** `fcntl(2)`: the signal readiness raises instead of `SIGIO` (Linux). */
export const F_SETSIG = 10;
/** `SIGURG`, the same number on x86_64 and aarch64; ignored by default. */
export const SIGURG = 23;
/** `fcntl(2)`: duplicate to the lowest free number ≥ arg, close-on-exec. */
export const F_DUPFD_CLOEXEC = 1030;
/** `fcntl(2)`: set the descriptor flags. */
export const F_SETFD = 2;
/** Descriptor flag: close on exec. */
export const FD_CLOEXEC = 1;

/** `flock(2)`: shared lock. */
export const LOCK_SH = 1;
/** `flock(2)`: exclusive lock. */
export const LOCK_EX = 2;
/** `flock(2)`: fail with `EWOULDBLOCK` instead of waiting. */
export const LOCK_NB = 4;
/** `flock(2)`: unlock. */
export const LOCK_UN = 8;

/** `poll(2)` event: readable. */
export const POLLIN = 0x1;
/** `poll(2)` event: writable. */
export const POLLOUT = 0x4;
/** `poll(2)` event: hang-up (always reported). */
export const POLLHUP = 0x10;
/** `poll(2)` event: the descriptor is not open. */
export const POLLNVAL = 0x20;

/** `epoll_ctl(2)`: register a descriptor. */
export const EPOLL_CTL_ADD = 1;
/** `epoll_ctl(2)`: remove a registration. */
export const EPOLL_CTL_DEL = 2;
/** `epoll_ctl(2)`: change a registration's events and data. */
export const EPOLL_CTL_MOD = 3;
/** `epoll_event` event: readable (for a listener: a connection is pending). */
export const EPOLLIN = 0x1;
/** `epoll_create1(2)`: close on exec. */
export const EPOLL_CLOEXEC = 0o2000000;

/** `clock_gettime(2)`: the system-wide monotonic clock. */
export const CLOCK_MONOTONIC = 1;
/** `memfd_create(2)`: close on exec. */
export const MFD_CLOEXEC = 1;
/** `eventfd(2)`: close on exec. */
export const EFD_CLOEXEC = 0o2000000;
/** `eventfd(2)`: non-blocking. */
export const EFD_NONBLOCK = 0o4000;

/** `syscall(2)` number of `pidfd_open` (the same on x86_64 and aarch64). */
export const SYS_PIDFD_OPEN = 434;

/** `st_mode` mask of the file type bits. */
export const S_IFMT = 0o170000;
/** File type: socket. */
export const S_IFSOCK = 0o140000;
/** File type: regular file. */
export const S_IFREG = 0o100000;
/** File type: FIFO (pipe). */
export const S_IFIFO = 0o10000;
/** File type: directory. */
export const S_IFDIR = 0o40000;

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
  return opened = opener.openBackend(LIBC_PATH, bindSymbols);
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

/** The type of {@linkcode bindSymbols}, which each backend is given (it imports no value from here). */
export type BindSymbols = typeof bindSymbols;

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
