/**
 * The descriptor store: the listeners, connections and files a process hands
 * to its successor, by name.
 *
 * @module
 */
import {
  close,
  dup,
  fileIdentity,
  openFile,
  setNonBlocking,
} from "../ffi/fd.ts";
import { O_CREAT, O_RDWR } from "../ffi/libc.ts";
import {
  bindDatagram,
  formatAddress,
  type InetAddress,
  listenReplacingStale,
  localAddress,
  parseIPv4,
  parseIPv6,
  type SocketAddress,
  socketInfo,
} from "../ffi/socket.ts";
import type { DescriptorKind, DescriptorMeta } from "./protocol.ts";
import { rethrowing, TablerollError } from "./errors.ts";

/** Where to listen: a TCP/UDP host and port, a Unix socket path, or an abstract Unix name. */
export type ListenAddress =
  | { hostname?: string; port: number }
  | { path: string }
  | { abstract: string };

/** A descriptor held by the store. */
export interface Descriptor {
  /** The name it is handed over under. */
  readonly name: string;
  /** `"listener"`, `"conn"` (e.g. a UDP socket) or `"file"`. */
  readonly kind: "listener" | "conn" | "file";
  /**
   * The descriptor number. The store owns it and closes it at `stop()`:
   * never close it yourself; `dup` it when something else must own a copy.
   */
  readonly fd: number;
  /** Go's network name: `"tcp"`, `"unix"`, `"udp"`, `"unixgram"`, or `""` for files. */
  readonly network: string;
  /** Go's address string (`"127.0.0.1:8080"`, a path), or `""` for files. */
  readonly addr: string;
  /** The socket's address, for sockets. */
  readonly address?: SocketAddress;
  /** Whether it came from the predecessor. */
  readonly inherited: boolean;
}

/** A listening socket in the store. */
export interface Listener extends Descriptor {
  /** Always `"listener"`. */
  readonly kind: "listener";
  /** `"tcp"` for IPv4 and IPv6, `"unix"` for Unix sockets. */
  readonly network: "tcp" | "unix";
  /** The address it is bound to (the real port when port 0 was asked for). */
  readonly address: SocketAddress;
}

interface Entry extends Descriptor {
  claimed: boolean;
}

/**
 * The descriptors an upgrader holds and hands over, by name. Changes are
 * refused while a handover is under way ({@linkcode UpgradeInProgressError}),
 * after it completed ({@linkcode UpgradeCompletedError}) and after the
 * upgrader stopped ({@linkcode StoppedError}).
 */
export interface Fds {
  /**
   * A TCP or Unix listener named `name`: the inherited one if the
   * predecessor had it, otherwise a new one bound to `address`. An inherited
   * listener that does not match `address` (port 0 matches any port) is a
   * {@linkcode DescriptorMismatchError}. The listener is non-blocking. A
   * Unix socket file that nobody accepts on any more (left by a stopped
   * process) is replaced.
   *
   * @example
   * ```ts ignore
   * const web = upgrader.fds.listen("web", { hostname: "127.0.0.1", port: 8080 });
   * ```
   */
  listen(name: string, address: ListenAddress): Listener;
  /** A UDP or Unix datagram socket named `name`, inherited or newly bound (kind `"conn"`). */
  listenDatagram(name: string, address: ListenAddress): Descriptor;
  /** A file named `name`, inherited or opened at `path`. */
  openFile(
    name: string,
    path: string,
    options?: {
      /** `open(2)` flags; default `O_RDWR | O_CREAT`. */
      flags?: number;
      /** Mode for a created file; default `0o644`. */
      mode?: number;
    },
  ): Descriptor;
  /**
   * Stores a copy of a descriptor the application already has (from
   * systemd, say) under `name`; the caller keeps `fd`. The kind is detected:
   * a listening socket, another socket (`"conn"`), or a file.
   */
  add(name: string, fd: number): Descriptor;
  /** The descriptor named `name`, or `undefined`. Looking does not claim it. */
  get(name: string): Descriptor | undefined;
  /**
   * Claims the inherited descriptor `name` as it is, whatever its kind, so
   * that `ready()` keeps it; `undefined` if there is none. `listen`,
   * `listenDatagram` and `openFile` claim what they return; inherited
   * descriptors nobody claimed are closed by `ready()`.
   *
   * @example
   * ```ts ignore
   * const metrics = upgrader.fds.claim("metrics") ?? upgrader.fds.add("metrics", fd);
   * ```
   */
  claim(name: string): Descriptor | undefined;
  /** Closes and forgets the descriptor named `name`; returns whether there was one. */
  remove(name: string): boolean;
  /** Every descriptor, in the order they were stored. */
  list(): Descriptor[];
}

/**
 * The store behind {@linkcode Fds}, with the operations the upgrader itself
 * needs (snapshot, inherit, close). Changes go through a guard that enforces
 * the upgrader's state.
 */
export class DescriptorStore implements Fds {
  readonly #entries = new Map<string, Entry>();
  /** Names of inherited descriptors that `ready()` closed unclaimed. */
  readonly #closedUnclaimed = new Set<string>();
  readonly #guard: (action: string) => void;

  /** @param guard throws when the upgrader's state forbids `action`. */
  constructor(guard: (action: string) => void) {
    this.#guard = guard;
  }

  listen(name: string, address: ListenAddress): Listener {
    return this.#change(`listen on ${JSON.stringify(name)}`, () => {
      const wanted = toSocketAddress(address);
      const existing = this.#claim(name, "listener", wanted);
      if (existing) return existing as Listener;
      // Non-blocking, as the runtimes' servers expect (a blocking listener
      // stalls Deno's event loop in accept4). The flag belongs to the shared
      // open file description, so every process holding it sees the same.
      const fd = listenReplacingStale(wanted, { nonblocking: true });
      return this.#store(name, "listener", fd) as Listener;
    });
  }

  listenDatagram(name: string, address: ListenAddress): Descriptor {
    return this.#change(`bind datagram socket ${JSON.stringify(name)}`, () => {
      const wanted = toSocketAddress(address);
      return this.#claim(name, "conn", wanted) ??
        this.#store(name, "conn", bindDatagram(wanted));
    });
  }

  openFile(
    name: string,
    path: string,
    options: { flags?: number; mode?: number } = {},
  ): Descriptor {
    return this.#change(`open file ${JSON.stringify(name)}`, () => {
      const existing = this.#claim(name, "file");
      if (existing) return existing;
      const fd = openFile(
        path,
        options.flags ?? (O_RDWR | O_CREAT),
        options.mode ?? 0o644,
      );
      return this.#store(name, "file", fd);
    });
  }

  add(name: string, fd: number): Descriptor {
    return this.#change(`add ${JSON.stringify(name)}`, () => {
      if (this.#entries.has(name)) {
        throw new TablerollError(
          "descriptor-mismatch",
          `a descriptor named ${JSON.stringify(name)} is already stored`,
        );
      }
      const kind = detectKind(fd);
      return this.#store(name, kind, dup(fd));
    });
  }

  get(name: string): Descriptor | undefined {
    const entry = this.#entries.get(name);
    return entry && publicView(entry);
  }

  claim(name: string): Descriptor | undefined {
    return this.#change(`claim ${JSON.stringify(name)}`, () => {
      this.#refuseClosedUnclaimed(name);
      const entry = this.#entries.get(name);
      if (entry) entry.claimed = true;
      return entry && publicView(entry);
    });
  }

  remove(name: string): boolean {
    return this.#change(`remove ${JSON.stringify(name)}`, () => {
      const entry = this.#entries.get(name);
      if (!entry) return false;
      this.#entries.delete(name);
      close(entry.fd);
      return true;
    });
  }

  /**
   * `change`, if the upgrader's state allows `action`, with what the FFI
   * layer throws let out as a {@linkcode TablerollError}.
   */
  #change<T>(action: string, change: () => T): T {
    this.#guard(action);
    return rethrowing(change);
  }

  list(): Descriptor[] {
    return [...this.#entries.values()].map(publicView);
  }

  /** Metadata and descriptors to hand over, in matching order. */
  snapshot(): { meta: DescriptorMeta[]; fds: number[] } {
    const entries = [...this.#entries.values()];
    return {
      meta: entries.map(({ kind, name, network, addr }) => ({
        kind,
        id: name,
        network,
        addr,
      })),
      fds: entries.map((e) => e.fd),
    };
  }

  /** Stores the descriptors received from the predecessor (they are claimed by later calls). */
  inherit(meta: readonly DescriptorMeta[], fds: readonly number[]): void {
    // Refuse before storing any: on a refusal the caller closes all of `fds`.
    const names = new Set(this.#entries.keys());
    for (const { id } of meta) {
      if (names.has(id)) {
        throw new TablerollError(
          "protocol",
          `the predecessor sent two descriptors named ${JSON.stringify(id)}`,
        );
      }
      names.add(id);
    }
    meta.forEach((m, i) => {
      this.#entries.set(m.id, {
        name: m.id,
        kind: m.kind,
        fd: fds[i],
        network: m.network ?? "",
        addr: m.addr ?? "",
        address: m.kind === "file"
          ? undefined
          : socketAddressOrUndefined(fds[i]),
        inherited: true,
        claimed: false,
      });
    });
  }

  /**
   * Stores the descriptors a service manager passed (socket activation).
   * Like inherited ones, later calls claim them and `ready()` closes those
   * never claimed; listeners become non-blocking. A name the predecessor
   * handed over keeps the inherited descriptor and the passed one is closed.
   */
  activate(passed: readonly { name: string; fd: number }[]): void {
    const fresh = passed.filter(({ name, fd }) => {
      if (!this.#entries.has(name)) return true;
      close(fd);
      return false;
    });
    this.inherit(
      fresh.map(({ name, fd }) => {
        const kind = detectKind(fd);
        if (kind === "listener") setNonBlocking(fd, true);
        const { network, addr } = describeSocket(kind, fd);
        return { kind, id: name, network, addr };
      }),
      fresh.map(({ fd }) => fd),
    );
  }

  /** Closes inherited descriptors that the application never asked for; returns their names. */
  closeUnclaimed(): string[] {
    const names: string[] = [];
    for (const entry of this.#entries.values()) {
      if (!entry.inherited || entry.claimed) continue;
      this.#entries.delete(entry.name);
      this.#closedUnclaimed.add(entry.name);
      close(entry.fd);
      names.push(entry.name);
    }
    return names;
  }

  /** Closes every descriptor (at stop). */
  closeAll(): void {
    for (const entry of this.#entries.values()) close(entry.fd);
    this.#entries.clear();
  }

  #claim(
    name: string,
    kind: DescriptorKind,
    wanted?: SocketAddress,
  ): Descriptor | undefined {
    this.#refuseClosedUnclaimed(name);
    const entry = this.#entries.get(name);
    if (!entry) return undefined;
    if (entry.kind !== kind) {
      throw new TablerollError(
        "descriptor-mismatch",
        `${
          JSON.stringify(name)
        } is a ${entry.kind}, not a ${kind}: use another name or remove it first`,
      );
    }
    if (wanted && entry.address && !addressMatches(wanted, entry.address)) {
      const real = formatAddress(entry.address);
      const described = entry.addr === real
        ? ""
        : ` (the predecessor described it as ${entry.network} ${entry.addr})`;
      throw new TablerollError(
        "descriptor-mismatch",
        `${JSON.stringify(name)} is bound to ${real}${described}, not to ${
          formatAddress(wanted)
        } as asked: ` +
          "the predecessor listened elsewhere; use a new name for the new address",
      );
    }
    entry.claimed = true;
    return publicView(entry);
  }

  #refuseClosedUnclaimed(name: string): void {
    if (this.#closedUnclaimed.has(name)) {
      throw new TablerollError(
        "claimed-too-late",
        `${
          JSON.stringify(name)
        } was inherited from the predecessor, but ready() closed it ` +
          "because nothing had claimed it yet: listen on it (or serve it, or fds.claim() it) " +
          "before calling ready()",
      );
    }
  }

  /** Stores a descriptor this process created; callers made sure `name` is free. */
  #store(name: string, kind: DescriptorKind, fd: number): Descriptor {
    const entry: Entry = {
      name,
      kind,
      fd,
      ...describeSocket(kind, fd),
      inherited: false,
      claimed: true,
    };
    this.#entries.set(name, entry);
    return publicView(entry);
  }
}

function publicView({ claimed: _, ...descriptor }: Entry): Descriptor {
  return descriptor;
}

function detectKind(fd: number): DescriptorKind {
  if (fileIdentity(fd).kind !== "socket") return "file";
  return socketInfo(fd).listening ? "listener" : "conn";
}

/** Go's network and address strings of a socket, and its address; empty for files. */
function describeSocket(
  kind: DescriptorKind,
  fd: number,
): { network: string; addr: string; address?: SocketAddress } {
  if (kind === "file") return { network: "", addr: "", address: undefined };
  const address = localAddress(fd);
  return {
    network: goNetwork(fd, address),
    addr: formatAddress(address),
    address,
  };
}

/** Go's name for the network of a socket. */
function goNetwork(fd: number, address: SocketAddress): string {
  const { type } = socketInfo(fd);
  if (address.family === "unix") {
    return type === "dgram"
      ? "unixgram"
      : type === "seqpacket"
      ? "unixpacket"
      : "unix";
  }
  return type === "dgram" ? "udp" : "tcp";
}

function socketAddressOrUndefined(fd: number): SocketAddress | undefined {
  try {
    return fileIdentity(fd).kind === "socket" ? localAddress(fd) : undefined;
  } catch {
    return undefined;
  }
}

/** Turns a {@linkcode ListenAddress} into a socket address. Hostnames other than `localhost` need an IP literal. */
export function toSocketAddress(address: ListenAddress): SocketAddress {
  if ("path" in address) return { family: "unix", path: address.path };
  if ("abstract" in address) {
    return { family: "unix", abstract: address.abstract };
  }
  const host = (address.hostname ?? "0.0.0.0").replace(/^\[(.*)\]$/, "$1");
  if (host === "localhost") {
    return { family: "inet", hostname: "127.0.0.1", port: address.port };
  }
  if (host.includes(":")) {
    parseIPv6(host);
    return { family: "inet6", hostname: host, port: address.port };
  }
  try {
    parseIPv4(host);
  } catch (err) {
    throw new TablerollError(
      "bad-address",
      `hostname ${
        JSON.stringify(host)
      } is not an IP address: pass an IPv4/IPv6 literal or "localhost"` +
        ` (${(err as Error).message})`,
    );
  }
  return { family: "inet", hostname: host, port: address.port };
}

function addressMatches(wanted: SocketAddress, actual: SocketAddress): boolean {
  if (wanted.family === "unix" || actual.family === "unix") {
    return wanted.family === "unix" && actual.family === "unix" &&
      wanted.path === actual.path && wanted.abstract === actual.abstract;
  }
  return wanted.family === actual.family &&
    canonicalHost(wanted) === canonicalHost(actual) &&
    (wanted.port === 0 || wanted.port === actual.port);
}

function canonicalHost(address: InetAddress): string {
  const bytes = address.family === "inet6"
    ? parseIPv6(address.hostname)
    : parseIPv4(address.hostname);
  return bytes.join(".");
}
