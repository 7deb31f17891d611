/**
 * The tested runtime versions (`adapters/tested_runtimes.ts`) and what
 * follows from them: the README's table, `engines` and the pinned versions
 * in `package.json`, and the warning for a version outside the range.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { ROOT } from "../testing/copies.ts";
import {
  currentRuntime,
  placeInTestedRange,
  TESTED_VERSIONS,
  untestedVersionWarning,
} from "../adapters/tested_runtimes.ts";

const packageJson = JSON.parse(
  readFileSync(join(ROOT, "package.json"), "utf8"),
) as {
  engines: Record<string, string>;
  devDependencies: Record<string, string>;
};

test("tested runtimes: the README's table lists the tested versions, engines the oldest, the pins the newest", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const section = readme.split("\n## Tested runtime versions\n")[1]
    .split("\n## ")[0];
  const rows = [...section.matchAll(/^\| (Deno|Bun) +\| (\S+) +\|/gm)];
  for (const runtime of ["deno", "bun"] as const) {
    const versions = TESTED_VERSIONS[runtime];
    assertEquals(
      rows.filter(([, name]) => name.toLowerCase() === runtime).map((r) =>
        r[2]
      ),
      [...versions],
      `README rows of ${runtime}`,
    );
    assertEquals(packageJson.engines[runtime], `>=${versions[0]}`);
    assertEquals(packageJson.devDependencies[runtime], versions.at(-1));
  }
});

test("tested runtimes: a version outside the range is placed and warned about, one inside is not", () => {
  assertEquals(placeInTestedRange("deno", "1.46.3"), "older");
  assertEquals(placeInTestedRange("deno", "2.3.1"), "older");
  assertEquals(placeInTestedRange("deno", "2.4.0"), "tested");
  assertEquals(placeInTestedRange("deno", "2.10.0+abc"), "newer");
  assertEquals(placeInTestedRange("bun", "1.4.6-canary.1"), "newer");
  assertEquals(placeInTestedRange("bun", "next"), undefined);
  const newer = untestedVersionWarning("bun", "1.5.0")!;
  assert(newer.includes("Bun 1.5.0 is newer than every version"), newer);
  assert(newer.includes(`Bun 1.2.0 to ${TESTED_VERSIONS.bun.at(-1)}`), newer);
  assertEquals(
    untestedVersionWarning("deno", TESTED_VERSIONS.deno[0]),
    undefined,
  );
  const { name, version } = currentRuntime()!;
  assertEquals(untestedVersionWarning(name, version), undefined);
});
