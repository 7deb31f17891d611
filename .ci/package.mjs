#!/usr/bin/env node
// The npm package's build and manifest.
//
// In the repository, package.json's exports and bin name the TypeScript
// sources, which Bun and Deno run as they are, so a clone works without a
// build. The packed package names what `build` makes in dist/ instead: the
// bundle Bun loads (the `bun` condition and the bin) and the declarations
// TypeScript reads (the `types` condition), so that a consumer's tsc never
// checks the library's sources under its own settings. npm packs the
// package.json on disk after prepack, so prepack writes the package's
// manifest into it and postpack writes the repository's back; under
// `npm publish`, which reads package.json again after postpack to tell the
// registry, postpublish does. A pack stopped between the two leaves the
// package's manifest, which works from the checkout as long as dist/ is
// there, and which the next pack puts back (both rewrites are idempotent).
//
// Usage: node .ci/package.mjs build|prepack|postpack|postpublish
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const MANIFEST = join(ROOT, "package.json");
const OUT = "dist";
/** Entry points that only Deno runs: not bundled for Bun. */
const DENO_ONLY = new Set(["./deno"]);

/**
 * The source an export or bin target stands for (`./adapters/serve/mod.ts`,
 * `cli/mod.ts`).
 */
function sourceOf(target) {
  const path = typeof target === "string" ? target : target.default;
  const built = new RegExp(`^(\\./)?${OUT}/(.*)\\.js$`).exec(path);
  return built ? `${built[1] ?? ""}${built[2]}.ts` : path;
}

/** Where `build` puts what it makes of `source`, without the extension. */
function builtOf(source) {
  const [, dot, path] = /^(\.\/)?(.*)\.ts$/.exec(source);
  return `${dot ?? ""}${OUT}/${path}`;
}

/** The manifest's TypeScript entry points: [export key, source]. */
function entries(manifest) {
  return Object.entries(manifest.exports)
    .map(([key, target]) => [key, sourceOf(target)])
    .filter(([, source]) => source.endsWith(".ts"));
}

/** `manifest` as packed: types, the Bun bundle and the bin from dist/. */
function packaged(manifest) {
  const exports = Object.fromEntries(
    Object.entries(manifest.exports).map(([key, target]) => {
      const source = sourceOf(target);
      if (!source.endsWith(".ts")) return [key, target];
      const built = builtOf(source);
      const bun = DENO_ONLY.has(key) ? {} : { bun: `${built}.js` };
      return [key, { types: `${built}.d.ts`, ...bun, default: source }];
    }),
  );
  const bin = Object.fromEntries(
    Object.entries(manifest.bin).map((
      [name, target],
    ) => [name, `${builtOf(sourceOf(target))}.js`]),
  );
  return { ...manifest, exports, bin };
}

/** `manifest` as the repository keeps it: exports and bin on the sources. */
function repository(manifest) {
  const onSources = (object) =>
    Object.fromEntries(
      Object.entries(object).map(([key, target]) => [key, sourceOf(target)]),
    );
  return {
    ...manifest,
    exports: onSources(manifest.exports),
    bin: onSources(manifest.bin),
  };
}

function readManifest() {
  return JSON.parse(readFileSync(MANIFEST, "utf8"));
}

function writeManifest(manifest) {
  writeFileSync(MANIFEST, `${JSON.stringify(manifest, null, 2)}\n`);
}

/**
 * The pinned tool `name` of the devDependencies; exits with what to run if
 * they are not installed (a fresh clone).
 */
function tool(name) {
  const path = join(ROOT, "node_modules", ".bin", name);
  if (!existsSync(path)) {
    console.error(
      `error: building the npm package needs the pinned bun, deno and tsc ` +
        `of the devDependencies, and ${path} is missing: run "npm ci" first`,
    );
    process.exit(1);
  }
  return path;
}

function run(command, args, options = {}) {
  return execFileSync(command, args, {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
    ...options,
  });
}

/** dist/: the bundle for Bun and the declarations of every entry point. */
function build() {
  const [bun, deno, tsc] = ["bun", "deno", "tsc"].map(tool);
  const sources = entries(readManifest());
  rmSync(join(ROOT, OUT), { recursive: true, force: true });
  run(bun, [
    "build",
    ...sources.filter(([key]) => !DENO_ONLY.has(key)).map(([, s]) => s),
    "--target=bun",
    "--splitting",
    "--outdir",
    OUT,
  ]);
  const work = mkdtempSync(join(tmpdir(), "tableroll-declarations-"));
  try {
    // The modules behind an entry point hold code for both runtimes: tsc
    // checks them with the Bun types and Deno's (`deno types`, less the
    // references to Deno's own lib names, which tsc does not know; their
    // contents are in the file). Any diagnostic fails the build.
    const denoTypes = run(deno, ["types"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }).split("\n").filter((line) =>
      !/^\/\/\/ <reference (lib="deno\.|no-default-lib=)/.test(line)
    ).join("\n");
    writeFileSync(join(work, "deno.d.ts"), denoTypes);
    writeFileSync(
      join(work, "tsconfig.json"),
      JSON.stringify({
        extends: join(ROOT, "tsconfig.bun.json"),
        compilerOptions: {
          noEmit: false,
          declaration: true,
          emitDeclarationOnly: true,
          noEmitOnError: true,
          rootDir: ROOT,
          outDir: join(ROOT, OUT),
          typeRoots: [join(ROOT, "node_modules", "@types")],
        },
        include: [],
        files: [
          join(work, "deno.d.ts"),
          ...sources.map(([, s]) => join(ROOT, s)),
        ],
      }),
    );
    run(tsc, ["-p", join(work, "tsconfig.json"), "--pretty", "false"]);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

switch (process.argv[2]) {
  case "build":
    build();
    break;
  case "prepack":
    build();
    writeManifest(packaged(readManifest()));
    break;
  case "postpack":
    // npm publish still reads the packed manifest after this.
    if (process.env.npm_command !== "publish") {
      writeManifest(repository(readManifest()));
    }
    break;
  case "postpublish":
    writeManifest(repository(readManifest()));
    break;
  default:
    console.error(
      "usage: node .ci/package.mjs build|prepack|postpack|postpublish",
    );
    process.exit(2);
}
