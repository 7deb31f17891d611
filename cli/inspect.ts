/**
 * The state of a coordination directory as seen from outside: who is
 * recorded as owner and whether it lives, who holds the lock, which process
 * serves each control socket, which listeners the owner holds. Built from
 * the directory and `/proc` only: connecting to a control socket would start
 * a handover, so nothing here connects. Works the same for Go tableroll
 * processes, which lay the directory out identically.
 *
 * @module
 */
import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { resolve } from "node:path";
import {
  deviceNumbers,
  fileLocks,
  inetSockets,
  processCwd,
  processInfo,
  socketHolders,
  type UnixSocket,
  unixSockets,
} from "./procfs.ts";
import { readMarker, whyNotEnabled } from "./marker.ts";
import { S_IFMT, S_IFSOCK } from "../ffi/libc.ts";

/** What a process serving a control socket is doing. */
export type Role =
  | "owner"
  | "successor"
  | "draining"
  | "waiting"
  | "stale"
  | "unknown";

/** One `<id>.sock` file in the directory. */
export interface ControlSocketStatus {
  /** The id it belongs to (the file name without `.sock`). */
  id: string;
  /** Its path. */
  path: string;
  /** The processes holding the socket bound there (empty when stale). */
  pids: number[];
  /**
   * `owner`: the recorded owner; `successor`: holds the lock, taking over;
   * `draining`: an earlier owner finishing its requests; `waiting`: started
   * after the owner was recorded, waiting for the lock; `stale`: nothing is
   * bound there any more (`tableroll clean` removes it); `unknown`: bound by
   * a process this user cannot inspect.
   */
  role: Role;
  /** How long its process has been running, in milliseconds. */
  ageMs: number | null;
}

/** A listening socket the owner holds. */
export interface ListenerStatus {
  /** `tcp`, `udp` or `unix`. */
  protocol: "tcp" | "udp" | "unix";
  /** `HOST:PORT` or a path (`@name` when abstract). */
  address: string;
  /** Other processes of the directory holding the same socket (a predecessor, a successor). */
  sharedWith: number[];
}

/** The report of {@linkcode inspectDirectory}. */
export interface DirectoryStatus {
  /** The directory, as given. */
  dir: string;
  /** The recorded owner, or `null` when `<dir>/pid` is missing or empty. */
  owner: {
    /** The id in `<dir>/pid`. */
    id: string;
    /** The processes serving its control socket; empty when it is gone. */
    pids: number[];
    /** Whether a live process serves its control socket. */
    alive: boolean;
    /** Milliseconds since it was recorded (the file's modification time). */
    recordedMsAgo: number;
  } | null;
  /** Who holds the lock on `<dir>/pid`, or `null` when it is free. */
  lock: {
    /** The process that took it. */
    pid: number;
    /** The id whose control socket that process serves, if any. */
    id: string | null;
    /**
     * Upper bound of how long it has held the lock: the kernel does not
     * record when, but a process takes it after it starts.
     */
    heldAtMostMs: number | null;
  } | null;
  /** A handover under way: the owner has accepted a successor's connection. */
  handover: {
    /** Connections accepted on the owner's control socket and still open. */
    connections: number;
    /** The process taking over (the lock holder), if known. */
    successorPid: number | null;
  } | null;
  /** Whether the owner upgrades itself on a signal (`tableroll upgrade`), or `null` without a live owner. */
  selfUpgrade: {
    /** Whether `tableroll upgrade` can ask it. */
    enabled: boolean;
    /** Why not, when it cannot. */
    why: string | null;
    /** The signal it advertises. */
    signal: string | null;
    /** Upgrades it started. */
    started: number;
    /** Upgrades that failed. */
    failed: number;
    /** Why the last failed one failed. */
    lastFailure: string | null;
  } | null;
  /** The owner's listening sockets, its control socket left out. */
  listeners: ListenerStatus[];
  /** Every control socket in the directory. */
  sockets: ControlSocketStatus[];
}

const SOCKET_SUFFIX = ".sock";
const PID_FILE = "pid";

/** Thrown when the directory cannot be inspected at all. */
export class InspectError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InspectError";
  }
}

/** Reads the state of coordination directory `dir` from the directory and `/proc`. */
export function inspectDirectory(dir: string): DirectoryStatus {
  const names = listDirectory(dir);
  const absolute = resolve(dir);
  const real = realpathSync(absolute);
  const holders = socketHolders();
  const unix = unixSockets();

  const boundHere = (entry: UnixSocket, name: string): boolean =>
    [absolute, real].some((d) =>
      pathOf(entry, holders.get(entry.inode) ?? []) === `${d}/${name}`
    ) ||
    // Bound by a process this user cannot inspect, through a relative path.
    (!entry.path.startsWith("/") && !holders.has(entry.inode) &&
      entry.path.split("/").pop() === name);

  // The lock first: once it is free, the record read after it is final
  // (an owner writes its record before it releases the lock).
  const lock = lockHolder(dir);
  const record = readOwnerRecord(dir);
  const sockets: ControlSocketStatus[] = names
    .filter((n) => n.endsWith(SOCKET_SUFFIX) && isSocket(`${dir}/${n}`))
    .map((name) => {
      const bound = unix.filter((e) => e.listening && boundHere(e, name));
      const pids = [
        ...new Set(bound.flatMap((e) => holders.get(e.inode) ?? [])),
      ].sort((a, b) => a - b);
      const info = pids.map(processInfo).find((p) => p !== null) ?? null;
      const role: Role = bound.length === 0
        ? "stale"
        : info === null
        ? "unknown"
        : "waiting"; // refined below, once the owner and the lock are known
      return {
        id: name.slice(0, -SOCKET_SUFFIX.length),
        path: `${dir}/${name}`,
        pids,
        role,
        ageMs: info?.ageMs ?? null,
      };
    });

  const ownerSocket = record
    ? sockets.find((s) => s.id === record.id && s.role === "waiting")
    : undefined;
  for (const s of sockets) {
    if (s.role !== "waiting") continue;
    if (s === ownerSocket) s.role = "owner";
    else if (lock && s.pids.includes(lock.pid)) s.role = "successor";
    else if (record && s.ageMs !== null && s.ageMs > record.msAgo) {
      s.role = "draining";
    }
  }

  const ownerConnections = ownerSocket
    ? unix.filter((e) => e.connected && boundHere(e, `${ownerSocket.id}.sock`))
      .length
    : 0;
  return {
    dir,
    owner: record && {
      id: record.id,
      pids: ownerSocket ? ownerSocket.pids : [],
      alive: ownerSocket !== undefined,
      recordedMsAgo: record.msAgo,
    },
    lock: lock && {
      pid: lock.pid,
      id: sockets.find((s) => s.pids.includes(lock.pid))?.id ?? null,
      heldAtMostMs: processInfo(lock.pid)?.ageMs ?? null,
    },
    handover: ownerConnections > 0 ||
        (lock && ownerSocket && !ownerSocket.pids.includes(lock.pid))
      ? { connections: ownerConnections, successorPid: lock?.pid ?? null }
      : null,
    selfUpgrade: ownerSocket ? selfUpgradeOf(dir, ownerSocket) : null,
    listeners: ownerSocket
      ? listenersOf(ownerSocket.pids, sockets, holders, unix, absolute, real)
      : [],
    sockets,
  };
}

function selfUpgradeOf(
  dir: string,
  owner: ControlSocketStatus,
): DirectoryStatus["selfUpgrade"] {
  const marker = readMarker(dir, owner.id);
  const why = whyNotEnabled(marker, owner.pids);
  return {
    enabled: why === null,
    why,
    signal: marker?.signal ?? null,
    started: marker?.started ?? 0,
    failed: marker?.failed ?? 0,
    lastFailure: marker?.lastFailure ?? null,
  };
}

function listDirectory(dir: string): string[] {
  try {
    if (!statSync(dir).isDirectory()) {
      throw new InspectError(`${dir} is not a directory`);
    }
    return readdirSync(dir).sort();
  } catch (err) {
    if (err instanceof InspectError) throw err;
    const code = (err as { code?: string }).code;
    throw new InspectError(
      code === "ENOENT"
        ? `coordination directory ${dir} does not exist: check the path the service was started with`
        : `cannot read coordination directory ${dir} (${code}): run as the service's user`,
      { cause: err },
    );
  }
}

function isSocket(path: string): boolean {
  try {
    // The mode, not isSocket(): Deno's is false for every socket before 2.5.
    return (statSync(path).mode & S_IFMT) === S_IFSOCK;
  } catch {
    return false;
  }
}

/** The id in `<dir>/pid` and how long ago it was written, or `null`. */
function readOwnerRecord(dir: string): { id: string; msAgo: number } | null {
  try {
    const path = `${dir}/${PID_FILE}`;
    const id = readFileSync(path, "utf8");
    if (id === "") return null;
    return { id, msAgo: Math.max(0, Date.now() - statSync(path).mtimeMs) };
  } catch {
    return null;
  }
}

/** The process holding the `flock` on `<dir>/pid`, from `/proc/locks`. */
function lockHolder(dir: string): { pid: number } | null {
  let dev: number | bigint, ino: number | bigint;
  try {
    ({ dev, ino } = statSync(`${dir}/${PID_FILE}`, { bigint: true }));
  } catch {
    return null;
  }
  const [major, minor] = deviceNumbers(dev);
  const lock = fileLocks().find((l) =>
    !l.waiting && l.type === "FLOCK" && l.inode === BigInt(ino) &&
    l.major === major && l.minor === minor
  );
  return lock ? { pid: lock.pid } : null;
}

/**
 * The absolute path a Unix socket is bound to: a relative path is resolved
 * against the current directory of a process holding it.
 */
function pathOf(entry: UnixSocket, pids: number[]): string | null {
  if (entry.path.startsWith("/")) return entry.path;
  if (entry.path === "" || entry.path.startsWith("@")) return null;
  for (const pid of pids) {
    const cwd = processCwd(pid);
    if (cwd) return resolve(cwd, entry.path);
  }
  return null;
}

function listenersOf(
  ownerPids: number[],
  sockets: ControlSocketStatus[],
  holders: Map<number, number[]>,
  unix: UnixSocket[],
  ...dirs: string[]
): ListenerStatus[] {
  const inet = inetSockets();
  const unixByInode = new Map(unix.map((e) => [e.inode, e]));
  const directoryPids = new Set(sockets.flatMap((s) => s.pids));
  const out: ListenerStatus[] = [];
  const seen = new Set<number>();
  for (const [inode, pids] of holders) {
    if (seen.has(inode) || !pids.some((p) => ownerPids.includes(p))) continue;
    seen.add(inode);
    const sharedWith = pids.filter((p) =>
      !ownerPids.includes(p) && directoryPids.has(p)
    );
    const tcpOrUdp = inet.get(inode);
    if (tcpOrUdp?.listening) {
      out.push({
        protocol: tcpOrUdp.protocol,
        address: tcpOrUdp.address,
        sharedWith,
      });
      continue;
    }
    const u = unixByInode.get(inode);
    if (!u?.listening) continue;
    const path = pathOf(u, pids) ?? u.path;
    const isControl = dirs.some((d) =>
      path.startsWith(`${d}/`) && path.endsWith(SOCKET_SUFFIX) &&
      !path.slice(d.length + 1).includes("/")
    );
    if (!isControl) out.push({ protocol: "unix", address: path, sharedWith });
  }
  return out.sort((a, b) =>
    a.protocol.localeCompare(b.protocol) || a.address.localeCompare(b.address)
  );
}
