/**
 * Adoption of a listening socket into a runtime's native server.
 *
 * `Deno.serve` and `Bun.serve` only serve on sockets they created. The
 * adapters let the runtime create a placeholder listener, then make the
 * placeholder's descriptor number refer to the socket to serve on and
 * register it with the runtime's epoll instance exactly as the placeholder
 * was. This relies on the runtime's internals, so before the runtime can
 * accept on the adopted socket every step checks what it finds: the server
 * opened one non-blocking listener, one epoll registration waits for its
 * connections, and after the swap that registration reads back for the
 * adopted socket. Anything else throws a `TablerollError` with code `adoption` (naming the
 * runtime, its version and what to use instead), with the adopted socket
 * out of the runtime's epoll again. A runtime outside the tested versions
 * (`tested_runtimes.ts`) gets a warning once.
 *
 * @module
 */
import { Errno, SyscallError } from "../ffi/errors.ts";
import {
  close,
  dup,
  dup3,
  type FileIdentity,
  fileIdentity,
  isNonBlocking,
  setNonBlocking,
} from "../ffi/fd.ts";
import {
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLLIN,
  layout,
  libc,
} from "../ffi/libc.ts";
import type { EpollRegistration } from "../ffi/proc.ts";
import { epollRegistrations, fdTarget, listFds } from "../ffi/proc.ts";
import { localAddress, type SocketAddress, socketInfo } from "../ffi/socket.ts";
import { TablerollError } from "../src/errors.ts";
import { reporterOf } from "../src/upgrader.ts";
import {
  currentRuntime,
  NODE_ADAPTER_SINCE,
  runtimeName,
  testedRange,
  untestedVersionWarning,
  versionName,
} from "./tested_runtimes.ts";

/** Where the runtime should listen: loopback port 0, or a Unix path. */
export type PlaceholderAddress =
  | { hostname: string; port: 0 }
  | { path: string };

/** A placeholder address and the cleanup of what it left on disk. */
export interface Placeholder {
  /** Pass this to the runtime's serve call. */
  readonly address: PlaceholderAddress;
  /** Removes the placeholder's Unix socket file, if any; never throws. */
  dispose(): void;
}

/**
 * A placeholder of the same family as `real`.
 *
 * @example
 * ```ts ignore
 * const placeholder = placeholderFor({ family: "inet", hostname: "0.0.0.0", port: 80 });
 * placeholder.address; // { hostname: "127.0.0.1", port: 0 }
 * ```
 */
export function placeholderFor(real: SocketAddress): Placeholder {
  if (real.family === "inet") {
    return { address: { hostname: "127.0.0.1", port: 0 }, dispose() {} };
  }
  if (real.family === "inet6") {
    return { address: { hostname: "::1", port: 0 }, dispose() {} };
  }
  const dir = tempDirectory("tableroll-placeholder-");
  return {
    address: { path: `${dir.path}/listener.sock` },
    dispose() {
      try {
        dir.remove();
      } catch {
        // Out of descriptors, say: an empty directory left in the temporary
        // one does less harm than an error that loses the server just made.
      }
    },
  };
}

/**
 * A new private directory under the system's temporary one. Without `node:`
 * imports: on Deno they would load the Node compatibility layer.
 */
function tempDirectory(prefix: string): { path: string; remove(): void } {
  if ("Deno" in globalThis) {
    const path = Deno.makeTempDirSync({ prefix });
    return { path, remove: () => Deno.removeSync(path, { recursive: true }) };
  }
  // Bun's node:fs is built in and cheap.
  const { process } = globalThis as unknown as {
    process: {
      env: Record<string, string | undefined>;
      getBuiltinModule?(name: "node:fs"): NodeFs;
    };
  };
  // getBuiltinModule came with Bun 1.2.8; import.meta.require is older.
  const fs = process.getBuiltinModule?.("node:fs") ??
    (import.meta as unknown as { require(name: "node:fs"): NodeFs }).require(
      "node:fs",
    );
  const path = fs.mkdtempSync(`${process.env.TMPDIR ?? "/tmp"}/${prefix}`);
  return {
    path,
    remove: () => fs.rmSync(path, { recursive: true, force: true }),
  };
}

interface NodeFs {
  mkdtempSync(prefix: string): string;
  rmSync(path: string, options: { recursive: boolean; force: boolean }): void;
}

/**
 * The error of a runtime whose internals do not look as adoption expects
 * (`code` `adoption`): its native server cannot be given the socket, and
 * nothing was served on the wrong socket. `reason` says what was found
 * instead of what adoption needs; the message names the runtime and what to
 * use instead.
 */
function adoptionError(reason: string, options?: ErrorOptions): TablerollError {
  return new TablerollError(
    "adoption",
    `cannot hand a socket to ${runtimeName()}'s native server: ${reason}. ${alternatives()}.`,
    options,
  );
}

/** What to serve with instead of the native server, for this runtime. */
function alternatives(): string {
  const runtime = currentRuntime();
  const node =
    "Serve through tableroll's node:http adapter (@tableroll/tableroll/node)";
  if (!runtime) return node;
  const since = versionName(runtime.name, NODE_ADAPTER_SINCE[runtime.name]);
  return `${node}, which needs ${since} or later, or run a tested version (${
    testedRange(runtime.name)
  })`;
}

/**
 * Runs `open`, which must create exactly one listening socket, and returns
 * its result with that socket's descriptor. If that socket cannot be found
 * (none, several, or the descriptor table cannot be read: `EMFILE`), the
 * result is passed to `stop` and the error thrown.
 *
 * @example
 * ```ts ignore
 * const { value: server, fd } = listenerOpenedBy(
 *   () => Deno.serve({ hostname: "127.0.0.1", port: 0, handler }),
 *   (server) => server.shutdown(),
 * );
 * ```
 */
export function listenerOpenedBy<T>(
  open: () => T,
  stop: (value: T) => unknown = () => {},
): { value: T; fd: number } {
  // By number and file: another thread may close a descriptor meanwhile
  // and the server's socket may get its number.
  const before = new Map(listFds().map((fd) => [fd, fileOf(fd)]));
  const value = open();
  try {
    const opened = listFds().filter((fd) =>
      before.get(fd) !== fileOf(fd) && isListeningSocket(fd)
    );
    if (opened.length !== 1) {
      throw adoptionError(
        `expected the server to open one listening socket, it opened ${opened.length}`,
      );
    }
    return { value, fd: opened[0] };
  } catch (err) {
    abandon(value, stop);
    throw err;
  }
}

/**
 * Stops a server that could not be adopted into. What went wrong with the
 * adoption is the error to report; a failure to stop is dropped, so that it
 * cannot end the process as an unhandled rejection.
 */
function abandon<T>(server: T, stop: (server: T) => unknown): void {
  try {
    Promise.resolve(stop(server)).catch(() => {});
  } catch {
    // As above.
  }
}

function fileOf(fd: number): string | undefined {
  try {
    return fdTarget(fd);
  } catch {
    return undefined; // closed meanwhile
  }
}

function isListeningSocket(fd: number): boolean {
  try {
    return fileIdentity(fd).kind === "socket" && socketInfo(fd).listening;
  } catch {
    return false; // closed meanwhile, or not a socket family we know
  }
}

/** A socket adopted by the runtime's server, as {@linkcode adoptListener} returns it. */
export interface AdoptedListener {
  /** The runtime's descriptor number, which now refers to the adopted socket. */
  readonly fd: number;
  /** The runtime's epoll descriptor that watches {@linkcode AdoptedListener.fd}. */
  readonly epollFd: number;
  /** The adopted socket's real address (`getsockname`). */
  readonly address: SocketAddress;
  /**
   * Stops the runtime from accepting on this process's copy of the socket by
   * removing it from the runtime's epoll; other processes holding the socket
   * keep accepting. Idempotent.
   */
  stopAccepting(): void;
  /**
   * Undoes {@linkcode AdoptedListener.stopAccepting}: registers the socket
   * with the runtime's epoll again, with the same events and data, so the
   * runtime accepts on it again. Idempotent.
   */
  resumeAccepting(): void;
}

/**
 * Makes the runtime's listener `runtimeFd` refer to the socket `sourceFd`
 * (which stays open and owned by the caller), re-registers it with the
 * runtime's epoll instance with the same events and data, and confirms from
 * `/proc/self/fdinfo` that the registration now refers to the adopted socket.
 *
 * Throws a `TablerollError` (`adoption`) when the state is not the one expected:
 * the runtime's listener blocks, no epoll instance or several registrations
 * watch `runtimeFd`, the registration does not wait for connections, the
 * sockets' families differ, or the new registration cannot be made or does
 * not read back as written (it is removed again: the runtime never accepts
 * on the adopted socket then).
 *
 * @example
 * ```ts ignore
 * const { value: server, fd } = listenerOpenedBy(() => Deno.serve(options));
 * const listener = adoptListener(fd, upgrader.fds.listen("web", addr).fd);
 * ```
 */
export function adoptListener(
  runtimeFd: number,
  sourceFd: number,
): AdoptedListener {
  const source = socketInfo(sourceFd);
  const placeholder = socketInfo(runtimeFd);
  if (!source.listening || !placeholder.listening) {
    throw adoptionError(
      `descriptors ${sourceFd} and ${runtimeFd} must both be listening sockets`,
    );
  }
  if (source.family !== placeholder.family) {
    throw adoptionError(
      `the server listens on a ${placeholder.family} socket, the socket to adopt is ${source.family}`,
    );
  }
  // The adopted socket is made non-blocking: the runtime must expect that.
  if (!isNonBlocking(runtimeFd)) {
    throw adoptionError(
      `the server's listener (descriptor ${runtimeFd}) is blocking, so the runtime does not accept until EAGAIN`,
    );
  }
  const registration = soleRegistration(runtimeFd);
  const copy = dup(sourceFd);
  try {
    // The runtimes accept until EAGAIN; a blocking socket would stall them.
    setNonBlocking(copy, true);
    dup3(copy, runtimeFd);
  } finally {
    close(copy);
  }
  try {
    reregister(registration, runtimeFd);
    confirmRegistration(runtimeFd, sourceFd, registration);
  } catch (err) {
    // Fail closed: the runtime must not accept on a socket it half adopted.
    try {
      epollControl(registration.epollFds[0], EPOLL_CTL_DEL, runtimeFd);
    } catch {
      // Not registered: nothing to undo.
    }
    throw err;
  }

  const adopted = fileIdentity(sourceFd);
  let accepting = true;
  return {
    fd: runtimeFd,
    epollFd: registration.epollFds[0],
    address: localAddress(runtimeFd),
    stopAccepting() {
      if (!accepting) return;
      accepting = false;
      // The runtime may have closed the listener and the number gone to
      // another socket: removing that one from epoll would stall it.
      if (!refersTo(runtimeFd, adopted)) return;
      try {
        epollControl(registration.epollFds[0], EPOLL_CTL_DEL, runtimeFd);
      } catch (err) {
        // Already gone: the runtime closed the listener first.
        if (!(err instanceof SyscallError && err.errno === Errno.ENOENT)) {
          throw err;
        }
      }
    },
    resumeAccepting() {
      if (accepting) return;
      if (!refersTo(runtimeFd, adopted)) {
        throw adoptionError(
          `descriptor ${runtimeFd} no longer refers to the adopted socket: the server was closed, it cannot accept again`,
        );
      }
      epollControl(
        registration.epollFds[0],
        EPOLL_CTL_ADD,
        runtimeFd,
        registration,
      );
      accepting = true;
    },
  };
}

/** Whether `fd` is open and refers to the file `identity` describes. */
function refersTo(fd: number, identity: FileIdentity): boolean {
  try {
    const now = fileIdentity(fd);
    return now.dev === identity.dev && now.ino === identity.ino;
  } catch {
    return false; // closed
  }
}

interface Registration {
  /** Descriptors of one epoll instance (Deno's event loop holds two). */
  epollFds: number[];
  events: number;
  data: bigint;
}

/** Registers `runtimeFd` as `registration` says; a refusal is an a `TablerollError` (`adoption`). */
function reregister(registration: Registration, runtimeFd: number): void {
  try {
    epollControl(
      registration.epollFds[0],
      EPOLL_CTL_ADD,
      runtimeFd,
      registration,
    );
  } catch (err) {
    if (!(err instanceof SyscallError)) throw err;
    throw adoptionError(
      `epoll descriptor ${
        registration.epollFds[0]
      } refused the adopted socket (${err.code})`,
      { cause: err },
    );
  }
}

function soleRegistration(runtimeFd: number): Registration {
  const { ino } = fileIdentity(runtimeFd);
  const found = epollRegistrations().filter((r) =>
    r.targetFd === runtimeFd && r.ino === ino
  );
  if (found.length === 0) {
    throw adoptionError(
      `no epoll instance watches the server's listener (descriptor ${runtimeFd})`,
    );
  }
  // The same instance seen through duplicated descriptors lists the same
  // registration; anything else is a second registration.
  const distinct = new Set(found.map(registrationKey));
  if (distinct.size !== 1) {
    throw adoptionError(
      `${distinct.size} different epoll registrations watch the server's listener (descriptor ${runtimeFd})`,
    );
  }
  if ((found[0].events & EPOLLIN) === 0) {
    throw adoptionError(
      `the epoll registration of the server's listener (descriptor ${runtimeFd}) does not wait for connections: events ${
        found[0].events.toString(16)
      }`,
    );
  }
  return {
    epollFds: found.map((r) => r.epollFd),
    events: found[0].events,
    data: found[0].data,
  };
}

function registrationKey(r: Pick<EpollRegistration, "events" | "data">) {
  return `${r.events}/${r.data}`;
}

function confirmRegistration(
  runtimeFd: number,
  sourceFd: number,
  expected: Registration,
): void {
  const { ino } = fileIdentity(sourceFd);
  const all = epollRegistrations().filter((r) => r.targetFd === runtimeFd);
  for (const epollFd of expected.epollFds) {
    const seen = all.filter((r) => r.epollFd === epollFd);
    const ok = seen.length === 1 && seen[0].ino === ino &&
      registrationKey(seen[0]) === registrationKey(expected);
    if (!ok) {
      throw adoptionError(
        `after re-registering descriptor ${runtimeFd}, epoll descriptor ${epollFd} lists ` +
          `${seen.map(describe).join(", ") || "nothing"} instead of ` +
          `${
            describe({ ...expected, ino })
          } (epoll_event layout ${layout().epollEvent.size} bytes)`,
      );
    }
  }
}

function describe(r: Pick<EpollRegistration, "events" | "data" | "ino">) {
  return `events ${r.events.toString(16)} data ${
    r.data.toString(16)
  } inode ${r.ino}`;
}

function epollControl(
  epollFd: number,
  op: number,
  fd: number,
  registration?: Pick<Registration, "events" | "data">,
): void {
  const event = new Uint8Array(layout().epollEvent.size);
  if (registration) {
    const view = new DataView(event.buffer);
    view.setUint32(layout().epollEvent.events, registration.events, true);
    view.setBigUint64(layout().epollEvent.data, registration.data, true);
  }
  libc.epoll_ctl(epollFd, op, fd, event);
}

/**
 * Starts a native server on a placeholder of `source`'s family with `open`,
 * then adopts `source` into it. If adoption fails the server is stopped with
 * `stop` and the error (a `TablerollError` (`adoption`), or a `SyscallError` such
 * as `EMFILE`) is thrown. On a runtime version outside the tested range it
 * first warns, once per process, through `upgrader`'s logger (or
 * `console.warn` without one).
 *
 * @example
 * ```ts ignore
 * const { server, listener } = serveAdopted(
 *   upgrader.fds.listen("web", { hostname: "127.0.0.1", port: 8080 }),
 *   (placeholder) => Deno.serve({ ...placeholder, handler }),
 *   (server) => server.shutdown(),
 * );
 * ```
 */
export function serveAdopted<T>(
  source: { fd: number; address: SocketAddress },
  open: (placeholder: PlaceholderAddress) => T,
  stop: (server: T) => unknown,
  upgrader?: object,
): { server: T; listener: AdoptedListener } {
  warnIfUntested(upgrader);
  const placeholder = placeholderFor(source.address);
  let opened: { value: T; fd: number };
  try {
    opened = listenerOpenedBy(() => open(placeholder.address), stop);
  } finally {
    placeholder.dispose();
  }
  try {
    return {
      server: opened.value,
      listener: adoptListener(opened.fd, source.fd),
    };
  } catch (err) {
    abandon(opened.value, stop);
    throw err;
  }
}

let warned = false;

/** Warns once per process if this runtime's version was not tested. */
function warnIfUntested(upgrader: object | undefined): void {
  const runtime = currentRuntime();
  if (warned || !runtime) return;
  const warning = untestedVersionWarning(runtime.name, runtime.version);
  if (!warning) return;
  warned = true;
  const reporter = upgrader && reporterOf(upgrader);
  if (reporter) reporter.logger.warn(warning);
  else console.warn(warning);
}
