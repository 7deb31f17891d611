/**
 * `tableroll status DIR`: who owns the directory, who holds the lock, which
 * process serves each control socket, which listeners the owner holds.
 *
 * @module
 */
import { type Command, EXIT, type Output } from "./command.ts";
import { formatDuration, table } from "./format.ts";
import { type DirectoryStatus, inspectDirectory } from "./inspect.ts";

/** The `status` command. */
export const status: Command = {
  name: "status",
  summary: "show the owner, the lock, the control sockets and the listeners",
  help: `usage: tableroll status DIR [--json]

Shows the state of the coordination directory DIR, read from the directory
and /proc without connecting to anything (connecting to a control socket
would start a handover): the recorded owner and whether it is alive, the
process holding the lock and for how long at most, every control socket with
its process or "stale", the owner's listening sockets, a handover under way,
and earlier owners still draining. Works on directories of Go tableroll
processes too.

Options:
  --json      print the report as one JSON object
  -h, --help  show this help

Exit status:
  0  a live owner and no handover under way
  1  the directory cannot be read
  2  wrong command line
  3  no live owner (none recorded, or the recorded one is gone)
  4  a handover is under way (a process other than the owner holds the lock)`,
  options: {},
  run(dir, flags, output) {
    const report = inspectDirectory(dir);
    if (flags.json) output.out(JSON.stringify(report, null, 2));
    else printReport(report, output);
    return statusCode(report);
  },
};

/** The exit code a report stands for. */
export function statusCode(report: DirectoryStatus): number {
  if (!report.owner?.alive) return EXIT.noOwner;
  if (report.handover) return EXIT.busy;
  return EXIT.ok;
}

function printReport(r: DirectoryStatus, output: Output): void {
  const rows: string[][] = [["directory", r.dir]];
  rows.push(["owner", ownerLine(r)]);
  rows.push(["lock", lockLine(r)]);
  if (r.handover) {
    const who = r.handover.successorPid === null
      ? "a process"
      : `pid ${r.handover.successorPid}`;
    rows.push([
      "handover",
      `${who} is taking over (${r.handover.connections} connection(s) open to the owner's control socket)`,
    ]);
  }
  if (r.selfUpgrade) {
    rows.push(["self-upgrade", selfUpgradeLine(r.selfUpgrade)]);
  }
  const listeners = r.listeners.map((l) =>
    `${l.protocol} ${l.address}` +
    (l.sharedWith.length > 0
      ? ` (also held by ${l.sharedWith.join(", ")})`
      : "")
  );
  rows.push(["listeners", listeners.shift() ?? "none"]);
  for (const line of listeners) rows.push(["", line]);
  const draining = r.sockets.filter((s) => s.role === "draining");
  if (draining.length > 0) {
    rows.push([
      "draining",
      draining.map((s) => `pid ${s.pids.join(",")} (id ${s.id})`).join(", "),
    ]);
  }
  for (const line of table(rows)) output.out(line);
  output.out("control sockets");
  if (r.sockets.length === 0) output.out("  none");
  const sockets = r.sockets.map((s) => [
    `${s.id}.sock`,
    s.pids.length > 0 ? `pid ${s.pids.join(",")}` : "-",
    s.role,
    s.ageMs === null
      ? s.role === "stale"
        ? "nothing serves it: tableroll clean removes it"
        : ""
      : `up ${formatDuration(s.ageMs)}`,
  ]);
  for (const line of table(sockets, "  ")) output.out(line);
}

function ownerLine({ owner, sockets }: DirectoryStatus): string {
  if (!owner) return "none recorded";
  const ago = `recorded ${formatDuration(owner.recordedMsAgo)} ago`;
  if (owner.alive) {
    return `id ${owner.id}, pid ${owner.pids.join(",")}, alive, ${ago}`;
  }
  const socket = sockets.find((s) => s.id === owner.id);
  const why = !socket
    ? "its control socket is gone"
    : socket.role === "unknown"
    ? "its control socket is served by a process this user cannot see"
    : "nothing serves its control socket";
  return `id ${owner.id}, not alive (${why}), ${ago}`;
}

function lockLine({ lock, owner }: DirectoryStatus): string {
  if (!lock) return "free";
  const who = `pid ${lock.pid}` + (lock.id === null ? "" : ` (id ${lock.id})`);
  const held = lock.heldAtMostMs === null
    ? ""
    : `, for at most ${formatDuration(lock.heldAtMostMs)} (its age)`;
  const what = owner?.alive && lock.id !== owner.id
    ? ", taking over"
    : !owner
    ? ", starting without a predecessor"
    : "";
  return `held by ${who}${held}${what}`;
}

function selfUpgradeLine(
  s: NonNullable<DirectoryStatus["selfUpgrade"]>,
): string {
  if (!s.enabled) return "off (tableroll upgrade cannot ask it)";
  const history = s.started === 0
    ? ""
    : ` (${s.started} started, ${s.failed} failed${
      s.lastFailure ? `; last failure: ${s.lastFailure}` : ""
    })`;
  return `on ${s.signal}: tableroll upgrade asks it${history}`;
}
