/**
 * The typed errors of the library, one family under
 * {@linkcode TablerollError}: the upgrader's own, and those of the FFI
 * layer it re-exports. Each one says what happened and what to do about it.
 *
 * @module
 */

import { TablerollError } from "../ffi/mod.ts";

export {
  InvalidAddressError,
  SyscallError,
  TablerollError,
  TruncatedMessageError,
  UnsupportedPlatformError,
  UnsupportedSyscallError,
} from "../ffi/mod.ts";

/** The descriptor store refused a change because a handover is under way. */
export class UpgradeInProgressError extends TablerollError {
  static {
    this.prototype.name = "UpgradeInProgressError";
  }

  /** `action` is what was refused, e.g. `"add a listener"`. */
  constructor(action: string) {
    super(
      `cannot ${action}: a successor is taking over this process's descriptors; ` +
        "wait for the upgrade to complete or fail",
    );
  }
}

/** The upgrade completed: this process handed its descriptors over and must drain. */
export class UpgradeCompletedError extends TablerollError {
  static {
    this.prototype.name = "UpgradeCompletedError";
  }

  /** `action` is what was refused, e.g. `"add a listener"`. */
  constructor(action: string) {
    super(
      `cannot ${action}: this process already handed its descriptors to a successor; ` +
        "finish in-flight work and exit",
    );
  }
}

/** The upgrader was stopped. */
export class StoppedError extends TablerollError {
  static {
    this.prototype.name = "StoppedError";
  }

  /** `action` is what was refused, e.g. `"add a listener"`. */
  constructor(action: string) {
    super(`cannot ${action}: the upgrader was stopped; create a new one`);
  }
}

/** A wait (lock, handover, successor) took longer than allowed. */
export class UpgradeTimeoutError extends TablerollError {
  static {
    this.prototype.name = "UpgradeTimeoutError";
  }
}

/** The peer sent bytes that do not follow the tableroll protocol. */
export class ProtocolError extends TablerollError {
  static {
    this.prototype.name = "ProtocolError";
  }
}

/** The peer closed the connection or died in the middle of the handover. */
export class PeerClosedError extends TablerollError {
  static {
    this.prototype.name = "PeerClosedError";
  }
}

/** The coordination directory is missing, not a directory, or not usable by this user. */
export class CoordinationDirError extends TablerollError {
  static {
    this.prototype.name = "CoordinationDirError";
  }
}

/** The process at the other end of a control connection runs as another user. */
export class UntrustedPeerError extends TablerollError {
  static {
    this.prototype.name = "UntrustedPeerError";
  }
}

/** A requested descriptor does not match what was inherited under that name. */
export class DescriptorMismatchError extends TablerollError {
  static {
    this.prototype.name = "DescriptorMismatchError";
  }
}

/**
 * A descriptor inherited under this name was closed by `ready()` because
 * nothing had claimed it yet: opening it anew now would fail or serve on a
 * different socket while the predecessor drains.
 */
export class ClaimedTooLateError extends TablerollError {
  static {
    this.prototype.name = "ClaimedTooLateError";
  }

  /** `name` is the descriptor's name. */
  constructor(name: string) {
    super(
      `${
        JSON.stringify(name)
      } was inherited from the predecessor, but ready() closed it ` +
        "because nothing had claimed it yet: listen on it (or serve it, or fds.claim() it) " +
        "before calling ready()",
    );
  }
}

/** An id that cannot name a control socket, or that a live process already uses. */
export class InvalidIdError extends TablerollError {
  static {
    this.prototype.name = "InvalidIdError";
  }
}

/** `upgrade()` was called in a process that is not the owner. */
export class NotOwnerError extends TablerollError {
  static {
    this.prototype.name = "NotOwnerError";
  }

  /** `state` is the upgrader's state at the call. */
  constructor(state: string) {
    super(
      `cannot start an upgrade in state ${state}: only the owner can start its successor; ` +
        "call it after ready() and before a successor took over",
    );
  }
}

/** The copy started by `upgrade()` ended before it took over. */
export class SuccessorFailedError extends TablerollError {
  static {
    this.prototype.name = "SuccessorFailedError";
  }

  /** Its exit status, or `undefined` if a signal ended it. */
  readonly status: number | undefined;
  /** The number of the signal that ended it, if one did. */
  readonly signal: number | undefined;
  /** The last bytes it wrote to stderr. */
  readonly stderr: string;

  /** `pid` ended with `status` or `signal`; `stderr` is the tail of its stderr. */
  constructor(
    pid: number,
    ended: { code?: number; signal?: number },
    stderr: string,
  ) {
    super(
      `the new copy (pid ${pid}) ${
        ended.signal === undefined
          ? `exited with status ${ended.code}`
          : `was killed by signal ${ended.signal}`
      } before it took over; this process is still the owner. ` +
        (stderr
          ? `Its stderr ends with:\n${stderr}`
          : "It wrote nothing to stderr."),
    );
    this.status = ended.code;
    this.signal = ended.signal;
    this.stderr = stderr;
  }
}

/** The descriptors announced by socket activation (`LISTEN_FDS`) cannot be used. */
export class ActivationError extends TablerollError {
  static {
    this.prototype.name = "ActivationError";
  }
}
