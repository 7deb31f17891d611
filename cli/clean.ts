/**
 * `tableroll clean DIR`: removes control sockets nothing serves any more.
 *
 * @module
 */
import { unlinkSync } from "node:fs";
import { type Command, EXIT } from "./command.ts";
import { inspectDirectory, InspectError } from "./inspect.ts";

/** The `clean` command. */
export const clean: Command = {
  name: "clean",
  summary: "remove stale control sockets",
  help: `usage: tableroll clean DIR [--dry-run] [--json]

Removes the control sockets in DIR that no process serves any more, as a
process killed before it could stop leaves them (a Go tableroll process that
starts again with the same id fails on such a file). A socket that any live
process has bound, or that this user cannot tell about, is never removed.
The lock file DIR/pid is never touched.

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
    let stale: string[];
    let kept: string[];
    try {
      const before = inspectDirectory(dir).sockets;
      stale = before.filter((s) => s.role === "stale").map((s) => s.path);
      kept = before.filter((s) => s.role !== "stale").map((s) => s.path);
    } catch (err) {
      if (!(err instanceof InspectError)) throw err;
      output.err(`tableroll clean: ${err.message}`);
      return EXIT.failed;
    }
    const removed: string[] = [];
    let code: number = EXIT.ok;
    if (!flags["dry-run"] && stale.length > 0) {
      // Look again right before removing: a process may have bound one meanwhile.
      const stillStale = new Set(
        inspectDirectory(dir).sockets.filter((s) => s.role === "stale")
          .map((s) => s.path),
      );
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
      output.out(`no stale control socket in ${dir}`);
    } else {
      const verb = flags["dry-run"] ? "would remove" : "removed";
      for (const path of listed) output.out(`${verb} ${path}`);
    }
    return code;
  },
};
