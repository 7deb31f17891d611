/**
 * The errors of the FFI layer: the one every failing libc call raises, a
 * truncated descriptor message, their base class, and the errno names they
 * carry.
 *
 * @module
 */

/**
 * Base class of the FFI layer's errors. The library above turns them into
 * its own error where they leave it.
 *
 * @example
 * ```ts ignore
 * try {
 *   listenOn({ family: "inet", hostname: "127.0.0.1", port: 80 });
 * } catch (err) {
 *   if (!(err instanceof FfiError)) throw err;
 *   console.error(err.message);
 * }
 * ```
 */
export class FfiError extends Error {
  // Each class names itself in words: bundlers may rename classes (`bun
  // build` with several entry points does), so `new.target.name` would not do.
  static {
    this.prototype.name = "FfiError";
  }
}

/**
 * A libc call failed. Carries the call's name, the errno number and its
 * symbolic name.
 *
 * @example Telling one failure from another
 * ```ts ignore
 * try {
 *   listenOn({ family: "inet", hostname: "127.0.0.1", port: 8080 });
 * } catch (err) {
 *   if (err instanceof SyscallError && err.code === "EADDRINUSE") {
 *     console.log("port taken");
 *   }
 * }
 * ```
 */
export class SyscallError extends FfiError {
  static {
    this.prototype.name = "SyscallError";
  }

  /** The libc function that failed, e.g. `"bind"`. */
  readonly syscall: string;
  /** The errno number. */
  readonly errno: number;
  /** The symbolic errno name, e.g. `"EADDRINUSE"`. */
  readonly code: string;

  /**
   * Creates the error; `description` is `strerror(errno)` and `detail`
   * (a path, an address) is put in the message.
   */
  constructor(
    syscall: string,
    errno: number,
    description: string,
    detail?: string,
  ) {
    const code = errnoName(errno);
    super(
      `${syscall}${
        detail ? ` (${detail})` : ""
      } failed: ${code}: ${description}`,
    );
    this.syscall = syscall;
    this.errno = errno;
    this.code = code;
  }
}

/** Descriptors arrived but did not fit the receive buffer; the kernel closed the rest. */
export class TruncatedMessageError extends FfiError {
  static {
    this.prototype.name = "TruncatedMessageError";
  }

  /** Creates the error; `what` names the part that was cut. */
  constructor(what: string) {
    super(
      `recvmsg: ${what} was truncated (MSG_CTRUNC/MSG_TRUNC): the sender sent more than the ` +
        "receiver asked for; the descriptors that did arrive were closed",
    );
  }
}

/**
 * The kernel lacks a system call the caller needs (`ENOSYS`), e.g.
 * `pidfd_open` before Linux 5.3.
 *
 * @example
 * ```ts ignore
 * try {
 *   pidfdOpen(pid);
 * } catch (err) {
 *   if (err instanceof UnsupportedSyscallError) console.log(err.message);
 * }
 * ```
 */
export class UnsupportedSyscallError extends SyscallError {
  static {
    this.prototype.name = "UnsupportedSyscallError";
  }

  /** Creates the error for `syscall`, which the kernel has from `since` on. */
  constructor(syscall: string, since: string, description: string) {
    super(syscall, Errno.ENOSYS, description);
    this.message =
      `${syscall} failed: ENOSYS: this kernel lacks it (it came with ${since}): ` +
      "run on a newer kernel or use a way that does not need it";
  }
}

const NAMES: readonly string[] = [
  "",
  "EPERM",
  "ENOENT",
  "ESRCH",
  "EINTR",
  "EIO",
  "ENXIO",
  "E2BIG",
  "ENOEXEC",
  "EBADF",
  "ECHILD",
  "EAGAIN",
  "ENOMEM",
  "EACCES",
  "EFAULT",
  "ENOTBLK",
  "EBUSY",
  "EEXIST",
  "EXDEV",
  "ENODEV",
  "ENOTDIR",
  "EISDIR",
  "EINVAL",
  "ENFILE",
  "EMFILE",
  "ENOTTY",
  "ETXTBSY",
  "EFBIG",
  "ENOSPC",
  "ESPIPE",
  "EROFS",
  "EMLINK",
  "EPIPE",
  "EDOM",
  "ERANGE",
  "EDEADLK",
  "ENAMETOOLONG",
  "ENOLCK",
  "ENOSYS",
  "ENOTEMPTY",
  "ELOOP",
];

const NETWORK_NAMES: Record<number, string> = {
  88: "ENOTSOCK",
  89: "EDESTADDRREQ",
  90: "EMSGSIZE",
  91: "EPROTOTYPE",
  92: "ENOPROTOOPT",
  93: "EPROTONOSUPPORT",
  94: "ESOCKTNOSUPPORT",
  95: "EOPNOTSUPP",
  96: "EPFNOSUPPORT",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  102: "ENETRESET",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  105: "ENOBUFS",
  106: "EISCONN",
  107: "ENOTCONN",
  108: "ESHUTDOWN",
  109: "ETOOMANYREFS",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  112: "EHOSTDOWN",
  113: "EHOSTUNREACH",
  114: "EALREADY",
  115: "EINPROGRESS",
};

/** Numbers of the errno values the library reacts to by name. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  EACCES: 13,
  EEXIST: 17,
  EINVAL: 22,
  EMFILE: 24,
  EPIPE: 32,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTSOCK: 88,
  EADDRINUSE: 98,
  ECONNRESET: 104,
  ENOTCONN: 107,
  ECONNREFUSED: 111,
  EINPROGRESS: 115,
} as const;

/** The symbolic name of `errno` (`"EADDRINUSE"`), or `"E<number>"` if unknown. */
export function errnoName(errno: number): string {
  return NAMES[errno] || NETWORK_NAMES[errno] || `E${errno}`;
}
