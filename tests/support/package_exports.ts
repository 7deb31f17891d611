/**
 * The package's names and the sources they stand for, as package.json
 * exports them: the repository's names the sources; the packed package's
 * names them under the `default` condition (beside its declarations and the
 * bundle Bun loads).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Each name the package in `dir` exports (`@tableroll/tableroll/serve`),
 * with the path of its source relative to `dir` (`adapters/serve/mod.ts`).
 */
export function sourceExports(dir: string): Record<string, string> {
  const { name, exports } = JSON.parse(
    readFileSync(join(dir, "package.json"), "utf8"),
  ) as { name: string; exports: Record<string, string | { default: string }> };
  return Object.fromEntries(
    Object.entries(exports).map(([key, target]) => [
      name + key.slice(1),
      (typeof target === "string" ? target : target.default).slice(2),
    ]),
  );
}
