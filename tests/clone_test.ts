/**
 * The README's "Using a clone" steps as printed, on a fresh `git clone` of
 * this repository and offline: a Deno project with the section's imports,
 * a Bun project linked by its commands. In each, the package's names resolve
 * to the clone's sources, two copies of a program that imports the package
 * by name hand over, and the command line the section prints reads the
 * directory. On a clone without `npm ci`, `npm pack` says to run it. None of
 * it changes the clone.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { onlyUnder, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { APP, NAME, upgradeBetweenCopies } from "./support/package_app.ts";
import { sourceExports } from "./support/package_exports.ts";
import { type Place, withPlace } from "./fixtures/place.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";

/** The package's TypeScript entry points: name → source in a checkout. */
const ENTRIES = Object.fromEntries(
  Object.entries(sourceExports(ROOT)).filter(([, s]) => s.endsWith(".ts")),
);

/** Prints, as JSON, the URL each of the package's names resolves to. */
const RESOLVE = `console.log(JSON.stringify(${
  JSON.stringify(Object.keys(ENTRIES))
}.map((name) => import.meta.resolve(name))));
`;

/** The README's section "Using a clone". */
function section(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("\n## Using a clone\n");
  assert(start >= 0, "the README has no section Using a clone");
  return readme.slice(start, readme.indexOf("\n## ", start + 1));
}

/** The section's first code block in `language`. */
function block(language: "json" | "sh"): string {
  const found = new RegExp("```" + language + "\\n([\\s\\S]*?)```").exec(
    section(),
  );
  assert(found, `Using a clone has no ${language} block`);
  return found[1];
}

/** `command` as the section prints it, its `DIR` replaced by `dir`. */
function printed(command: string, dir: string): [string, string[]] {
  assert(section().includes(`\`${command}\``), `the README lacks ${command}`);
  const [program, ...args] = command.split(" ");
  return [program, args.map((arg) => arg === "DIR" ? dir : arg)];
}

/**
 * Runs the README's status command `command` (its program replaced by
 * `program`, if given) on `place`'s directory from `project`: it names
 * `owner`'s pid as the owner's, and the clone is still as cloned.
 */
function assertStatusNames(
  { command, program, env }: {
    command: string;
    program?: string;
    env?: NodeJS.ProcessEnv;
  },
  place: Place,
  { clone, project }: { clone: string; project: string },
  owner: { pid: number },
): void {
  const [printedProgram, args] = printed(command, place.dir);
  const status = execFileSync(program ?? printedProgram, [...args, "--json"], {
    cwd: project,
    env,
    encoding: "utf8",
  });
  assertEquals(JSON.parse(status).owner.pids, [owner.pid]);
  assertEquals(changes(clone), "", "the clone is as cloned");
}

/**
 * A fresh clone of this repository as committed, `place.tmp/tableroll`, and
 * next to it a new project, `place.tmp/app`, that holds the program.
 */
function cloneBesideProject(place: Place): { clone: string; project: string } {
  const clone = join(place.tmp, "tableroll");
  execFileSync("git", ["clone", "--quiet", "--no-hardlinks", ROOT, clone], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const project = join(place.tmp, "app");
  mkdirSync(project);
  writeFileSync(join(project, "app.ts"), APP);
  writeFileSync(join(project, "resolve.ts"), RESOLVE);
  return { clone, project };
}

/** Each of the package's names, run by `command`, resolves to its source in `clone`. */
function assertResolvesInto(clone: string, command: [string, string[]]): void {
  const urls = JSON.parse(execFileSync(...command, { encoding: "utf8" }));
  assertEquals(
    (urls as string[]).map((url) => realpathSync(fileURLToPath(url))),
    Object.values(ENTRIES).map((source) => join(clone, source)),
  );
}

/** What git sees changed or added in `clone`, ignored files included. */
function changes(clone: string): string {
  return execFileSync("git", ["status", "--porcelain", "--ignored"], {
    cwd: clone,
    encoding: "utf8",
  });
}

test(
  "clone: a Deno project with the README's imports checks and runs two copies that hand over; the CLI runs from the clone",
  () =>
    withPlace(async (place) => {
      const copy = cloneBesideProject(place);
      const { clone, project } = copy;
      writeFileSync(join(project, "deno.json"), block("json"));
      const deno = runtimeBinary("deno");
      const app = join(project, "app.ts");
      assertResolvesInto(clone, [deno, ["run", join(project, "resolve.ts")]]);
      execFileSync(deno, ["check", app], { stdio: ["ignore", "pipe", "pipe"] });

      const owner = await upgradeBetweenCopies(place, (dir, port) => [
        deno,
        ["run", "-A", app, dir, String(port)],
      ]);

      assertStatusNames(
        {
          command: "deno run -A ../tableroll/cli/mod.ts status DIR",
          program: deno,
        },
        place,
        copy,
        owner,
      );
    }),
  {
    skip: onlyUnder("deno", "a Deno project imports the clone's sources"),
    timeout: 120_000,
  },
);

test(
  "clone: a Bun project linked by the README's commands, with no registry reachable, runs two copies that hand over; bunx tableroll reads the directory",
  () =>
    withPlace(async (place) => {
      const copy = cloneBesideProject(place);
      const { clone, project } = copy;
      writeFileSync(
        join(project, "package.json"),
        JSON.stringify({ name: "app", private: true, type: "module" }),
      );
      const bun = runtimeBinary("bun");
      const env = {
        ...process.env,
        PATH: `${dirname(bun)}:${process.env.PATH}`,
        // Where `bun link` registers the clone: here, not in the home directory.
        BUN_INSTALL: join(place.tmp, "bun"),
        // Nothing listens there: an install that needs the registry fails.
        BUN_CONFIG_REGISTRY: "http://127.0.0.1:1/",
      };
      execFileSync("bash", ["-euo", "pipefail", "-c", block("sh")], {
        cwd: project,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      const manifest = JSON.parse(
        readFileSync(join(project, "package.json"), "utf8"),
      );
      assertEquals(manifest.dependencies, {
        [NAME]: "link:@tableroll/tableroll",
      });
      assertResolvesInto(clone, [bun, [join(project, "resolve.ts")]]);

      const owner = await upgradeBetweenCopies(place, (dir, port) => [
        bun,
        [join(project, "app.ts"), dir, String(port)],
      ]);

      assertStatusNames(
        { command: "bunx tableroll status DIR", env },
        place,
        copy,
        owner,
      );
    }),
  {
    skip: onlyUnder("bun", "a Bun project links the clone"),
    timeout: 120_000,
  },
);

test(
  "clone: npm pack without npm ci fails saying to run it, and leaves the clone as cloned",
  () =>
    withPlace(async (place) => {
      const { clone } = cloneBesideProject(place);
      const failure = await promisify(execFile)(
        "npm",
        ["pack", "--pack-destination", place.tmp],
        { cwd: clone, encoding: "utf8" },
      ).then(
        () => undefined,
        (err: { stdout: string; stderr: string }) => err,
      );
      assert(failure, "npm pack succeeded without the pinned build tools");
      assert(
        `${failure.stdout}${failure.stderr}`.includes('run "npm ci" first'),
        failure.stderr,
      );
      assertEquals(changes(clone), "", "the clone is as cloned");
    }),
  {
    skip: onlyUnder("deno", "npm is the same program under either runtime"),
    timeout: 60_000,
  },
);
