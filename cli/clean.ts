/**
 * `tableroll clean DIR`: removes control sockets nothing serves any more.
 *
 * @module
 */
import { readdirSync, unlinkSync } from "node:fs";
import { MARKER_SUFFIX } from "../self_upgrade/marker.ts";
import { markerIsLive, readMarker } from "./marker.ts";
import { type Command, EXIT } from "./command.ts";
import { inspectDirectory } from "./inspect.ts";

/** The `clean` command. */
export const clean: Command = {
  name: "clean",
  summary: "remove stale control sockets and self-upgrade markers",
  help: `usage: tableroll clean DIR [--dry-run] [--json]

Removes the control sockets in DIR that no process serves any more, as a
process killed before it could stop leaves them (a Go tableroll process that
starts again with the same id fails on such a file), and the self-upgrade
markers (<id>.self-upgrade) of processes that are gone. A socket that any
live process has bound, or that this user cannot tell about, is never
removed. The lock file DIR/pid is never touched.

Options:
  --dry-run   only say what would be removed
  --json      print {"removed": [...], "kept": [...]} as JSON
  -h, --help  show this help

Exit status:
  0  done (also when there was nothing to remove)
  1  the directory cannot be read, or a removal failed
  2  wrong command line`,
  options: { "dry-run": { type: "boolean", default: false } },
  run(dir, flags, output) {
    const { stale, kept } = staleFiles(dir);
    const removed: string[] = [];
    let code: number = EXIT.ok;
    if (!flags["dry-run"] && stale.length > 0) {
      // Look again right before removing: a process may have bound one meanwhile.
      const stillStale = new Set(staleFiles(dir).stale);
      for (const path of stale) {
        if (!stillStale.has(path)) {
          kept.push(path);
          continue;
        }
        try {
          unlinkSync(path);
          removed.push(path);
        } catch (err) {
          if ((err as { code?: string }).code === "ENOENT") continue;
          output.err(
            `tableroll clean: cannot remove ${path}: ${(err as Error).message}`,
          );
          code = EXIT.failed;
        }
      }
    }
    const listed = flags["dry-run"] ? stale : removed;
    if (flags.json) {
      output.out(JSON.stringify({
        [flags["dry-run"] ? "wouldRemove" : "removed"]: listed,
        kept,
      }));
    } else if (listed.length === 0) {
      output.out(`nothing stale in ${dir}`);
    } else {
      const verb = flags["dry-run"] ? "would remove" : "removed";
      for (const path of listed) output.out(`${verb} ${path}`);
    }
    return code;
  },
};

/**
 * The control sockets nothing serves and the self-upgrade markers of
 * processes that are gone (`stale`), and the other sockets and markers (`kept`).
 */
function staleFiles(dir: string): { stale: string[]; kept: string[] } {
  const stale: string[] = [];
  const kept: string[] = [];
  for (const s of inspectDirectory(dir).sockets) {
    (s.role === "stale" ? stale : kept).push(s.path);
  }
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith(MARKER_SUFFIX)) continue;
    const marker = readMarker(dir, name.slice(0, -MARKER_SUFFIX.length));
    // A file that is not a marker is not ours to judge.
    (marker && !markerIsLive(marker) ? stale : kept).push(`${dir}/${name}`);
  }
  return { stale, kept };
}
