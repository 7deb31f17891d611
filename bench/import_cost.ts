/**
 * What importing the library costs, statically: how many of its modules a
 * program that imports the root, and the root and `./serve`, makes the
 * runtime load, and how much source they are. Counted at run time from the
 * files the runtime opens (`strace`, see `opened_files.ts`), for each way a
 * user loads the library: Deno from source, Bun from source, Bun from the
 * npm package's bundle (`npm run build`, built into a temporary copy).
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { ROOT, runtimeBinary } from "../testing/copies.ts";
import { formatTable } from "../testing/table.ts";
import { openedFiles } from "./opened_files.ts";

const TIMEOUT_MS = 60_000;

/** The 1.0 target for the root and `./serve` together. */
const TARGET = { modules: 15, kib: 100 };

/** A way a user loads the library. */
interface Loading {
  label: string;
  runtime: "deno" | "bun";
  /** The directory whose modules are the library's. */
  library: string;
  /** The files of the root and of `./serve`. */
  root: string;
  serve: string;
}

/** A module file and its size. */
interface Module {
  path: string;
  bytes: number;
}

/** What a program's run loaded of a library. */
interface Load {
  /** The modules the runtime loaded to run. */
  loaded: Module[];
  /**
   * Modules the runtime read without running them: Deno reads the target of
   * every dynamic import written as a literal to build its module graph.
   */
  readOnly: Module[];
}

/**
 * Measures each way of loading the library, after checking the method on
 * each runtime; returns the table. Throws if a measurement cannot be made.
 */
export function importCost(): string {
  const work = mkdtempSync(join(tmpdir(), "tableroll-bench-imports-"));
  try {
    const sources = exportedEntries(ROOT, "deno.json");
    const bundled = join(work, "package");
    buildPackage(bundled);
    const bundle = exportedEntries(bundled, "package.json", "bun");
    const loadings: Loading[] = [
      { label: "deno, from source", runtime: "deno", ...sources },
      { label: "bun, from source", runtime: "bun", ...sources },
      { label: "bun, npm bundle (dist/)", runtime: "bun", ...bundle },
    ];
    const rows: string[][] = [];
    for (const runtime of ["deno", "bun"] as const) {
      rows.push([
        runtime,
        "check: one module, a dynamic import in it not taken",
        ...cells(check(runtime, work)),
      ]);
    }
    for (const loading of loadings) {
      const { runtime, library } = loading;
      const root = load(runtime, library, [loading.root], work);
      const both = load(runtime, library, [loading.root, loading.serve], work);
      rows.push(
        [loading.label, "root", ...cells(root)],
        [loading.label, "root + ./serve", ...cells(both, TARGET)],
      );
    }
    return formatTable([
      "loaded as",
      "the program imports",
      "modules loaded",
      "their source",
      "read, not run",
      `target: ≤ ${TARGET.modules} modules, ≤ ${TARGET.kib} KiB`,
    ], rows);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Checks the method on `runtime`: a program importing one module, which
 * holds a dynamic import that is not taken, loads exactly that module.
 * Throws otherwise.
 */
function check(runtime: "deno" | "bun", work: string): Load {
  const library = join(work, `check-${runtime}`);
  mkdirSync(library);
  const one = join(library, "one.ts");
  writeFileSync(
    one,
    "export const one = 1;\n" +
      "if (Math.random() < 0) await import('./never.ts');\n",
  );
  writeFileSync(join(library, "never.ts"), "export const never = 1;\n");
  const result = load(runtime, library, [one], work);
  const loaded = result.loaded.map((m) => m.path);
  if (loaded.length !== 1 || loaded[0] !== realpathSync(one)) {
    throw new Error(
      `the count is off on ${runtime}: importing one module loaded ` +
        `[${loaded.join(", ")}]`,
    );
  }
  return result;
}

/**
 * Runs a program that imports `entries` and nothing else under `runtime`
 * and returns what it loaded from `library`. A first run, not traced, fills
 * the runtimes' caches (Deno's transpiled copies, Bun's), as a service's
 * every start after its first finds them.
 */
function load(
  runtime: "deno" | "bun",
  library: string,
  entries: string[],
  work: string,
): Load {
  const program = join(work, "program.ts");
  writeFileSync(
    program,
    entries.map((entry) => `import ${JSON.stringify(entry)};\n`).join(""),
  );
  const command = runtime === "deno"
    ? [runtimeBinary("deno"), "run", "-A", program]
    : [runtimeBinary("bun"), program];
  const warmUp = spawnSync(command[0], command.slice(1), {
    cwd: work,
    encoding: "utf8",
    timeout: TIMEOUT_MS,
  });
  if (warmUp.status !== 0) {
    throw new Error(
      `${command.join(" ")} failed: ${warmUp.error ?? warmUp.stderr}`,
    );
  }
  const opened = openedFiles(command, work);
  const prefix = realpathSync(library) + sep;
  const modules = opened.filter((path) =>
    path.startsWith(prefix) &&
    !path.slice(prefix.length).split(sep).includes("node_modules") &&
    /\.[cm]?[jt]sx?$/.test(path)
  ).map((path) => ({ path, stat: statSync(path) }))
    .filter(({ stat }) => stat.isFile())
    .map(({ path, stat }) => ({ path, bytes: stat.size }));
  if (runtime === "bun") return { loaded: modules, readOnly: [] };
  // Deno runs a TypeScript module from its transpiled copy in its cache
  // (…/gen/file/<path>.js), read only for a module it runs; a JavaScript
  // module has no such copy and counts as run once read.
  const run = (path: string) =>
    !/\.[cm]?tsx?$/.test(path) ||
    opened.some((other) => other !== path && other.endsWith(`${path}.js`));
  return {
    loaded: modules.filter((m) => run(m.path)),
    readOnly: modules.filter((m) => !run(m.path)),
  };
}

/** The table's cells for `load`, with whether it meets `target` if given. */
function cells(load: Load, target?: typeof TARGET): string[] {
  const modules = load.loaded.length;
  const kib = sumKiB(load.loaded);
  const missed = target
    ? [
      ...(modules > target.modules ? ["modules"] : []),
      ...(kib > target.kib ? ["size"] : []),
    ]
    : [];
  return [
    String(modules),
    `${kib.toFixed(1)} KiB`,
    load.readOnly.length
      ? `${load.readOnly.length} (${sumKiB(load.readOnly).toFixed(1)} KiB)`
      : "–",
    !target ? "–" : missed.length ? `missed: ${missed.join(", ")}` : "met",
  ];
}

function sumKiB(modules: Module[]): number {
  return modules.reduce((sum, m) => sum + m.bytes, 0) / 1024;
}

/**
 * The library as the manifest `name` in `dir` exports it: `dir`, and the
 * files of its root (`.`) and `./serve` entry points, an export's
 * `condition` chosen where it has conditions; throws if it names no file.
 */
function exportedEntries(
  dir: string,
  name: string,
  condition?: string,
): Omit<Loading, "label" | "runtime"> {
  const { exports } = JSON.parse(readFileSync(join(dir, name), "utf8"));
  const file = (key: string) => {
    const entry = exports?.[key];
    const path = typeof entry === "string" ? entry : entry?.[condition ?? ""];
    if (typeof path !== "string") {
      throw new Error(`${name} exports no file for "${key}"`);
    }
    return join(dir, path);
  };
  return { library: dir, root: file("."), serve: file("./serve") };
}

/**
 * Copies the working tree's files (those git tracks or would track) to
 * `into` and makes it the npm package there with `npm run prepack` (the
 * bundle in `dist/`, and the manifest that names it): the repository's own
 * `dist/` and `package.json` are neither needed nor touched.
 */
function buildPackage(into: string): void {
  const listed = spawnSync(
    "git",
    ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    { cwd: ROOT, encoding: "utf8" },
  );
  if (listed.status !== 0) {
    throw new Error(`git ls-files failed: ${listed.error ?? listed.stderr}`);
  }
  for (const file of listed.stdout.split("\0")) {
    // A file deleted in the working tree is still listed as tracked.
    if (!file || !existsSync(join(ROOT, file))) continue;
    if (lstatSync(join(ROOT, file)).isDirectory()) continue;
    mkdirSync(dirname(join(into, file)), { recursive: true });
    cpSync(join(ROOT, file), join(into, file));
  }
  symlinkSync(join(ROOT, "node_modules"), join(into, "node_modules"));
  const build = spawnSync("npm", ["run", "prepack"], {
    cwd: into,
    encoding: "utf8",
    timeout: TIMEOUT_MS,
  });
  if (build.status !== 0) {
    throw new Error(`npm run prepack failed: ${build.error ?? build.stderr}`);
  }
}
