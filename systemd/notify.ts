/**
 * Service manager notification (`sd_notify(3)`): datagrams of `NAME=value`
 * lines sent to the socket named by `$NOTIFY_SOCKET`, a path or, starting
 * with `@`, an abstract address.
 *
 * @module
 */
import { monotonicNanos } from "../ffi/clock.ts";
import { close, getpid, write } from "../ffi/fd.ts";
import { connect, openSocket, type SocketAddress } from "../ffi/socket.ts";
import type { Logger, UpgraderEvent } from "../src/events.ts";

const encoder = new TextEncoder();

/**
 * Sends notifications to the service manager. Without `$NOTIFY_SOCKET`
 * (not started by systemd with `Type=notify`) use
 * {@linkcode SystemdNotifier.fromEnvironment}, which returns `undefined`.
 *
 * @example
 * ```ts ignore
 * SystemdNotifier.fromEnvironment(Deno.env.get("NOTIFY_SOCKET"), console)
 *   ?.send({ STATUS: "warming up" });
 * ```
 */
export class SystemdNotifier {
  /** Where notifications go. */
  readonly address: SocketAddress;
  readonly #logger: Logger;

  /** A notifier for `address`; `logger` hears of messages that could not be sent. */
  constructor(address: SocketAddress, logger: Logger) {
    this.address = address;
    this.#logger = logger;
  }

  /**
   * A notifier for the value of `$NOTIFY_SOCKET`, or `undefined` if it is
   * unset or empty. Addresses other than a path or `@name` (such as
   * `vsock:`) are not supported: a warning is logged and `undefined` returned.
   */
  static fromEnvironment(
    value: string | undefined,
    logger: Logger,
  ): SystemdNotifier | undefined {
    if (!value) return undefined;
    if (value.startsWith("/")) {
      return new SystemdNotifier({ family: "unix", path: value }, logger);
    }
    if (value.startsWith("@")) {
      return new SystemdNotifier(
        { family: "unix", abstract: value.slice(1) },
        logger,
      );
    }
    logger.warn(
      `tableroll: NOTIFY_SOCKET=${value} is neither a path nor an abstract address (@name); not notifying`,
    );
    return undefined;
  }

  /**
   * Sends one datagram with `fields` as `NAME=value` lines, in order. A
   * failure (no listener, a full queue) is logged: the service goes on.
   */
  send(fields: Record<string, string | number>): void {
    const text = Object.entries(fields)
      .map(([name, value]) => `${name}=${String(value).replace(/\n/g, " ")}`)
      .join("\n");
    let fd: number | undefined;
    try {
      fd = openSocket("unix", "dgram", { nonblocking: true });
      connect(fd, this.address);
      if (write(fd, encoder.encode(text)) === null) {
        throw new Error("the service manager's queue is full");
      }
    } catch (err) {
      this.#logger.warn(
        `tableroll: cannot notify the service manager (${
          JSON.stringify(text)
        }): ${(err as Error).message}`,
      );
    } finally {
      if (fd !== undefined) close(fd);
    }
  }

  /** `RELOADING=1` with `MONOTONIC_USEC`, as a reload must announce itself. */
  reloading(status: string): void {
    this.send({
      RELOADING: 1,
      MONOTONIC_USEC: String(monotonicNanos() / 1000n),
      STATUS: status,
    });
  }
}

/**
 * The notifications of an upgrader's life, as a listener of its events:
 * `MAINPID` as it asks its predecessor to step down (the old main process
 * must not exit before the service manager knows the new one; if the
 * predecessor stays, its pid is sent back), `MAINPID` and `READY=1` when it
 * becomes the owner, `STATUS` while it hands over, `RELOADING=1` while a
 * self-upgrade runs, `STOPPING=1` only when the owner itself stops. A
 * process that handed over is no longer the unit's main process and sends
 * nothing more.
 */
export function notifications(
  notifier: SystemdNotifier,
): (event: UpgraderEvent) => void {
  const pid = getpid();
  let claimingFrom: number | undefined;
  const serving = () =>
    notifier.send({ MAINPID: pid, READY: 1, STATUS: `Serving (pid ${pid})` });
  return (event) => {
    switch (event.type) {
      case "claiming":
        claimingFrom = event.predecessorPid;
        return notifier.send({ MAINPID: pid });
      case "ready":
      case "rolled-back":
        claimingFrom = undefined;
        return serving();
      case "handover-started":
        return notifier.send({
          STATUS: `Handing over to pid ${event.successorPid}`,
        });
      case "handover-failed":
        return notifier.send({
          STATUS:
            `Handover to pid ${event.successorPid} failed; serving (pid ${pid})`,
        });
      case "upgrade-started":
        return notifier.reloading(
          `Upgrading: started pid ${event.pid} to take over`,
        );
      case "upgrade-failed":
        return notifier.send({
          READY: 1,
          STATUS: `Upgrade failed; serving (pid ${pid})`,
        });
      case "stopped":
        if (event.from === "starting" && claimingFrom !== undefined) {
          // ready() failed: the predecessor stays the main process.
          return notifier.send({ MAINPID: claimingFrom });
        }
        if (event.from === "owner" || event.from === "handing-over") {
          return notifier.send({ STOPPING: 1, STATUS: "Stopping" });
        }
    }
  };
}
