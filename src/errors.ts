/**
 * The library's one error class, {@linkcode TablerollError}, with a
 * {@linkcode TablerollErrorCode} for the cases a program branches on. Every
 * message says what happened and what to do about it.
 *
 * The FFI layer below knows nothing of this class: its errors (a failed
 * system call, an address that cannot be encoded…) are turned into one by
 * {@linkcode asTablerollError} where they leave the library.
 *
 * @module
 */
import {
  FfiError,
  SyscallError,
  TruncatedMessageError,
  UnsupportedSyscallError,
} from "../ffi/errors.ts";
import { InvalidAddressError } from "../ffi/socket.ts";
import { UnsupportedPlatformError } from "../ffi/libc.ts";

/**
 * What went wrong, for a program that branches on it:
 *
 * - `bad-directory`: the coordination directory is missing, not this
 *   user's, or writable by others (or a file in it is);
 * - `bad-id`: the id cannot name a control socket; `id-in-use`: a live
 *   process serves the control socket of this id;
 * - `bad-address`: an address that cannot be listened on;
 * - `untrusted-peer`: the other end of a control connection runs as another
 *   user;
 * - `timeout`: the lock, a transfer or a successor took longer than allowed;
 * - `peer-closed`: the other process closed the connection, or died, in the
 *   middle of a handover; `protocol`: it broke the protocol;
 * - `descriptor-mismatch`: an inherited descriptor is not what was asked
 *   for; `claimed-too-late`: `ready()` already closed it, unclaimed;
 * - `upgrade-in-progress`, `upgrade-completed`, `stopped`: the upgrader's
 *   state refuses the call; `not-owner`: only the owner can start an
 *   upgrade; `successor-failed`: the copy it started ended first (see
 *   {@linkcode TablerollError.successor});
 * - `activation`: the service manager's socket activation is inconsistent;
 * - `adoption`: the runtime's own server cannot serve the socket;
 * - `unsupported`: this platform or kernel lacks something needed;
 * - `system`: a system call failed (see {@linkcode TablerollError.syscall}
 *   and {@linkcode TablerollError.errno}).
 */
export type TablerollErrorCode =
  | "bad-directory"
  | "bad-id"
  | "id-in-use"
  | "bad-address"
  | "untrusted-peer"
  | "timeout"
  | "peer-closed"
  | "protocol"
  | "descriptor-mismatch"
  | "claimed-too-late"
  | "upgrade-in-progress"
  | "upgrade-completed"
  | "stopped"
  | "not-owner"
  | "successor-failed"
  | "activation"
  | "adoption"
  | "unsupported"
  | "system";

/** Options of a {@linkcode TablerollError}, beyond `cause`. */
interface TablerollErrorOptions extends ErrorOptions {
  syscall?: string;
  errno?: string;
  successor?: TablerollError["successor"];
}

/**
 * Every error the library raises: branch on {@linkcode TablerollError.code}.
 *
 * @example Telling a busy port from the rest
 * ```ts ignore
 * try {
 *   upgrader.fds.listen("web", { port: 8080 });
 * } catch (err) {
 *   if (!(err instanceof TablerollError)) throw err;
 *   if (err.code === "system" && err.errno === "EADDRINUSE") console.error("port 8080 is taken");
 *   else console.error(err.message);
 * }
 * ```
 */
export class TablerollError extends Error {
  // The class names itself in words: bundlers may rename classes (`bun
  // build` with several entry points does), so `new.target.name` would not do.
  static {
    this.prototype.name = "TablerollError";
  }

  /** What went wrong. */
  readonly code: TablerollErrorCode;
  /** For `system`: the call that failed, e.g. `"bind"`. */
  readonly syscall?: string;
  /** For `system`: the errno's name, e.g. `"EADDRINUSE"`. */
  readonly errno?: string;
  /** For `successor-failed`: how the copy started by the self-upgrade ended. */
  readonly successor?: {
    /** Its pid. */
    readonly pid: number;
    /** Its exit status, if it exited. */
    readonly exitCode?: number;
    /** The number of the signal that ended it, if one did. */
    readonly exitSignal?: number;
    /** The last bytes it wrote to stderr. */
    readonly stderr: string;
  };

  /** An error of kind `code`; `message` says what happened and what to do. */
  constructor(
    code: TablerollErrorCode,
    message: string,
    options: TablerollErrorOptions = {},
  ) {
    const { syscall, errno, successor, ...errorOptions } = options;
    super(message, errorOptions);
    this.code = code;
    if (syscall !== undefined) this.syscall = syscall;
    if (errno !== undefined) this.errno = errno;
    if (successor !== undefined) this.successor = successor;
  }
}

/** Whether `err` is a {@linkcode TablerollError} of kind `code`. */
export function isTablerollError(
  err: unknown,
  code: TablerollErrorCode,
): err is TablerollError {
  return err instanceof TablerollError && err.code === code;
}

/**
 * `err` as the library lets it out: an error of the FFI layer becomes a
 * {@linkcode TablerollError} (the original as its `cause`); anything else is
 * returned as it is.
 */
export function asTablerollError(err: unknown): unknown {
  if (!(err instanceof FfiError)) return err;
  const options = { cause: err };
  if (
    err instanceof UnsupportedSyscallError ||
    err instanceof UnsupportedPlatformError
  ) {
    return new TablerollError("unsupported", err.message, options);
  }
  if (err instanceof SyscallError) {
    return new TablerollError("system", err.message, {
      ...options,
      syscall: err.syscall,
      errno: err.code,
    });
  }
  if (err instanceof InvalidAddressError) {
    return new TablerollError("bad-address", err.message, options);
  }
  if (err instanceof TruncatedMessageError) {
    return new TablerollError("protocol", err.message, options);
  }
  return new TablerollError("system", err.message, options);
}

/**
 * Runs `fn`, letting its errors out as {@linkcode asTablerollError} makes
 * them: for the library's public calls.
 */
export function rethrowing<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw asTablerollError(err);
  }
}

/** The refusal of `action` in upgrader state `state` (`handing-over`, `upgraded`, `stopped`). */
export function refusedIn(state: string, action: string): TablerollError {
  switch (state) {
    case "handing-over":
      return new TablerollError(
        "upgrade-in-progress",
        `cannot ${action}: a successor is taking over this process's descriptors; ` +
          "wait for the upgrade to complete or fail",
      );
    case "upgraded":
      return new TablerollError(
        "upgrade-completed",
        `cannot ${action}: this process already handed its descriptors to a successor; ` +
          "finish in-flight work and exit",
      );
    default:
      return new TablerollError(
        "stopped",
        `cannot ${action}: the upgrader was stopped; create a new one`,
      );
  }
}
