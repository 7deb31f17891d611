/**
 * systemd (and other service managers) around an upgrader: socket
 * activation as `sd_listen_fds(3)` does it, notifications over
 * `$NOTIFY_SOCKET` as `sd_notify(3)` does (`Type=notify`, with the main pid
 * moving to each new owner), and a PID file. Nothing here is loaded unless
 * this entry point is imported.
 *
 * @example A unit with `Type=notify`, `NotifyAccess=all` and a `.socket` unit naming its socket `web`
 * ```ts ignore
 * import { Upgrader } from "@tableroll/tableroll";
 * import { serve } from "@tableroll/tableroll/serve";
 * import { useSystemd } from "@tableroll/tableroll/systemd";
 *
 * const upgrader = await Upgrader.create("/run/hello");
 * useSystemd(upgrader, { pidFile: "/run/hello/hello.pid" });
 * const server = await serve({ upgrader, name: "web", port: 8080, handler }); // the activated socket
 * await upgrader.ready(); // MAINPID=, READY=1
 * ```
 *
 * @module
 */
import { getpid } from "../ffi/fd.ts";
import { getEnv } from "../ffi/runtime.ts";
import { rethrowing, TablerollError } from "../src/errors.ts";
import { coreOf, follow, type Upgrader } from "../src/upgrader.ts";
import { takeActivatedFds } from "./activation.ts";
import { notifications, SystemdNotifier } from "./notify.ts";
import { removePidFile, writePidFile } from "./pid_file.ts";

/** Options of {@linkcode useSystemd}. */
export interface SystemdOptions {
  /**
   * Take the sockets passed by socket activation (`LISTEN_PID`,
   * `LISTEN_FDS`, `LISTEN_FDNAMES`); `fds.listen(name)` then returns the one
   * of that name (systemd's `FileDescriptorName=`). Default true.
   */
  activation?: boolean;
  /**
   * Notify the service manager over `$NOTIFY_SOCKET`: `MAINPID` and
   * `READY=1` when this process becomes the owner, `RELOADING=1` while a
   * self-upgrade runs, `STOPPING=1` when the owner stops. Nothing is sent
   * without `$NOTIFY_SOCKET`. Default true.
   */
  notify?: boolean;
  /**
   * A file this process writes its pid to, atomically, whenever it becomes
   * the owner (systemd's `PIDFile=`, start-stop-daemon); removed when the
   * owner stops without a successor.
   */
  pidFile?: string;
}

/**
 * Puts `upgrader` under the service manager: call it right after
 * `Upgrader.create()`, before any `fds.listen()` and before `ready()`.
 * Throws a {@linkcode TablerollError} (`activation`) when the activation
 * variables contradict each other, or when called after `ready()`.
 *
 * @example
 * ```ts ignore
 * const upgrader = await Upgrader.create("/run/hello");
 * useSystemd(upgrader);
 * ```
 */
export function useSystemd(
  upgrader: Upgrader,
  options: SystemdOptions = {},
): void {
  const core = coreOf(upgrader);
  if (core.state !== "starting") {
    throw new TablerollError(
      "activation",
      `useSystemd() was called in state ${core.state}: call it right after Upgrader.create(), before ready()`,
    );
  }
  const logger = core.events.logger;
  if (options.activation !== false) {
    rethrowing(() => core.store.activate(takeActivatedFds()));
  }
  const notifier = options.notify === false
    ? undefined
    : SystemdNotifier.fromEnvironment(getEnv("NOTIFY_SOCKET"), logger);
  if (notifier) follow(upgrader, notifications(notifier));
  const { pidFile } = options;
  if (pidFile !== undefined) {
    const pid = getpid();
    follow(upgrader, (event) => {
      if (event.type === "ready" || event.type === "rolled-back") {
        writePidFile(pidFile, pid);
      } else if (
        event.type === "stopped" &&
        (event.from === "owner" || event.from === "handing-over")
      ) {
        removePidFile(pidFile, pid);
      }
    });
  }
}

export type { Upgrader };
