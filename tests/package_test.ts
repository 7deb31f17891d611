/**
 * The published package as a user gets it: `npm pack`, then, outside the
 * repository, an npm install of the tarball (Bun) or the unpacked tarball
 * behind an import map (Deno), and two copies of a small program that
 * imports the package by name hand over to each other. TypeScript checks a
 * program that uses the package against its declarations alone.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { promisify } from "node:util";
import { onlyUnder, test } from "./support/harness.ts";
import { sourceExports } from "./support/package_exports.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { APP, NAME, upgradeBetweenCopies } from "./support/package_app.ts";
import { type Place, withPlace } from "./fixtures/place.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";

/**
 * Under Bun: where the package's entry points resolve (the prebuilt bundle),
 * and every error class whose name is not the one it is exported as (a
 * bundler renames classes shared between entry points).
 */
const BUNDLE_CHECK = `import * as core from "${NAME}";
import * as serve from "${NAME}/serve";
import * as bun from "${NAME}/bun";
import * as node from "${NAME}/node";
import * as systemd from "${NAME}/systemd";
import * as selfUpgrade from "${NAME}/self-upgrade";

const misnamed = Object.entries({ ...core, ...serve, ...bun, ...node, ...systemd, ...selfUpgrade })
  .filter(([name]) => name.endsWith("Error"))
  .map(([name, ErrorClass]) => [name, new ErrorClass("protocol", "x").name])
  .filter(([name, shown]) => shown !== name);
const from = ["", "/serve", "/bun", "/node", "/systemd", "/self-upgrade", "/cli"]
  .map((entry) => import.meta.resolve("${NAME}" + entry));
console.log(JSON.stringify({ from, misnamed }));
`;

/** The entry points a Bun or Node program imports: all but `./deno`. */
const FOR_BUN_AND_NODE = [
  "",
  "/serve",
  "/bun",
  "/node",
  "/systemd",
  "/self-upgrade",
  "/cli",
];

/**
 * A program that uses each of {@linkcode FOR_BUN_AND_NODE} as a user would;
 * the lines marked `@ts-expect-error` must fail to check, which they only
 * do where the declarations give real types (not `any`).
 */
const CONSUMER = `import { createServer } from "node:http";
import { TablerollError, Upgrader, type UpgraderEvent } from "${NAME}";
import { serve } from "${NAME}/serve";
import { serve as serveBun } from "${NAME}/bun";
import { serve as serveNode } from "${NAME}/node";
import { useSystemd } from "${NAME}/systemd";
import { upgradeOnSignal } from "${NAME}/self-upgrade";
import { EXIT, main } from "${NAME}/cli";

export async function start(dir: string): Promise<void> {
  const upgrader = await Upgrader.create(dir, {
    onEvent: (event: UpgraderEvent) => console.log(event.type),
  });
  useSystemd(upgrader, { notify: true });
  const stopUpgrading: () => void = upgradeOnSignal(upgrader, { on: "SIGHUP" });
  const web = await serve({ upgrader, name: "web", port: 8080, handler: () => new Response("hi") });
  const api = await serveBun({ upgrader, name: "api", port: 8081, fetch: () => new Response("hi") });
  const admin = await serveNode({ upgrader, name: "admin", port: 8082, server: createServer() });
  admin.closeAllConnections(); // node:http's own
  await upgrader.ready();
  for await (const step of upgrader.takeovers()) {
    if (step === "final") break;
  }
  await Promise.all([web.finished, api.finished, admin.finished]);
  stopUpgrading();
  await upgrader.stop();
  // @ts-expect-error: a port is a number
  await serve({ upgrader, name: "web", port: "8080", handler: () => new Response("hi") });
  // @ts-expect-error: "soon" is no takeover step
  for await (const step of upgrader.takeovers()) if (step === "soon") break;
}

export async function status(dir: string): Promise<boolean> {
  try {
    return await main(["status", dir]) === EXIT.ok;
  } catch (err) {
    if (err instanceof TablerollError && err.code === "system") return false;
    throw err;
  }
}
`;

/**
 * Packs the repository into `dest` as npm would publish it; returns the
 * tarball's path. Checks what it holds and its manifest, and that packing
 * left the repository's package.json as it was.
 */
function pack(dest: string): string {
  const manifest = readFileSync(join(ROOT, "package.json"), "utf8");
  const out = execFileSync(
    "npm",
    ["pack", "--json", "--pack-destination", dest],
    { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
  );
  assertEquals(
    readFileSync(join(ROOT, "package.json"), "utf8"),
    manifest,
    "npm pack restores package.json",
  );
  // The prepack script's build reports on stdout before npm's JSON.
  const [{ filename, files }] = JSON.parse(out.slice(out.search(/^\[/m))) as {
    filename: string;
    files: { path: string }[];
  }[];
  const paths = files.map((f) => f.path);
  for (
    const path of [
      "mod.ts",
      "cli/mod.ts",
      "adapters/bun/mod.ts",
      "dist/mod.js",
      "dist/adapters/serve/mod.js",
      "dist/systemd/mod.js",
      "dist/self_upgrade/mod.js",
      "dist/cli/mod.js",
      "LICENSE",
    ]
  ) {
    assert(paths.includes(path), `the package lacks ${path}`);
  }
  const foreign = paths.filter((p) =>
    /^(tests|bench|examples|testing|node_modules|\.ci)\//.test(p)
  );
  assertEquals(foreign, [], "the package holds more than the library");
  const tarball = join(dest, filename);
  checkPackedManifest(JSON.parse(manifest), tarball, paths);
  return tarball;
}

/**
 * The packed manifest names, for each TypeScript entry point of the
 * repository's, its declarations, its bundle (but for the Deno-only
 * `./deno`) and its source; its bin is the bundled CLI. All are packed.
 */
function checkPackedManifest(
  repository: { exports: Record<string, string> },
  tarball: string,
  paths: string[],
): void {
  const packed = JSON.parse(
    execFileSync("tar", ["-xzOf", tarball, "package/package.json"], {
      encoding: "utf8",
    }),
  );
  for (const [key, source] of Object.entries(repository.exports)) {
    if (!source.endsWith(".ts")) {
      assertEquals(packed.exports[key], source, key);
      continue;
    }
    const built = `./dist/${source.slice("./".length, -".ts".length)}`;
    const bun = key === "./deno" ? {} : { bun: `${built}.js` };
    const expected = { types: `${built}.d.ts`, ...bun, default: source };
    assertEquals(packed.exports[key], expected, key);
    for (const path of Object.values(expected)) {
      assert(
        paths.includes(path.slice("./".length)),
        `the package lacks ${path}`,
      );
    }
  }
  assertEquals(packed.bin, { tableroll: "dist/cli/mod.js" });
}

/**
 * Packs the repository and installs the tarball with npm, offline, into a
 * new project `place.tmp/app`; returns the project's path.
 */
function installPackage(place: Place): string {
  const tarball = pack(place.tmp);
  const project = join(place.tmp, "app");
  mkdirSync(project);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }),
  );
  // The library has no dependencies: nothing but the tarball is needed.
  execFileSync("npm", [
    "install",
    "--offline",
    "--no-audit",
    "--no-fund",
    tarball,
  ], { cwd: project, stdio: ["ignore", "pipe", "pipe"] });
  const manifest = JSON.parse(
    readFileSync(join(project, "package.json"), "utf8"),
  );
  assert(manifest.dependencies?.[NAME], JSON.stringify(manifest));
  return project;
}

test(
  "package: installed from the npm tarball outside the repository, two copies under Bun hand over; its bin reads the directory",
  () =>
    withPlace(async (place) => {
      const project = installPackage(place);
      writeFileSync(join(project, "app.ts"), APP);
      writeFileSync(join(project, "bundle.ts"), BUNDLE_CHECK);
      const bundle = JSON.parse(
        execFileSync(runtimeBinary("bun"), [join(project, "bundle.ts")], {
          cwd: project,
          encoding: "utf8",
        }),
      ) as { from: string[]; misnamed: string[][] };
      for (const from of bundle.from) {
        assert(from.includes("/node_modules/@tableroll/tableroll/dist/"), from);
      }
      assertEquals(bundle.misnamed, [], "error classes keep their names");

      const owner = await upgradeBetweenCopies(place, (dir, port) => [
        runtimeBinary("bun"),
        [join(project, "app.ts"), dir, String(port)],
      ]);

      // `bunx tableroll`: the bin runs through its `#!/usr/bin/env bun` line.
      const status = execFileSync(
        join(project, "node_modules", ".bin", "tableroll"),
        ["status", place.dir, "--json"],
        {
          encoding: "utf8",
          env: {
            ...process.env,
            PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH}`,
          },
        },
      );
      assertEquals(JSON.parse(status).owner.pids, [owner.pid]);
    }),
  {
    skip: onlyUnder("bun", "Bun loads the package's bundle"),
    timeout: 120_000,
  },
);

test(
  "package: tsc checks a program using every entry point but ./deno against the package's declarations alone (no Deno types, skipLibCheck off, bundler and nodenext resolution)",
  () =>
    withPlace(async (place) => {
      const project = installPackage(place);
      // The types a Bun project has: @types/bun (with @types/node), here
      // the repository's own.
      symlinkSync(
        join(ROOT, "node_modules", "@types"),
        join(project, "node_modules", "@types"),
      );
      writeFileSync(join(project, "consumer.ts"), CONSUMER);
      const installed = join(project, "node_modules", NAME);
      for (
        const [module, moduleResolution] of [
          ["Preserve", "bundler"],
          ["NodeNext", "NodeNext"],
        ]
      ) {
        const compilerOptions = {
          target: "ESNext",
          module,
          moduleResolution,
          lib: ["ESNext"],
          types: ["bun"],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
        };
        writeFileSync(
          join(project, "tsconfig.json"),
          JSON.stringify({ compilerOptions, files: ["consumer.ts"] }),
        );
        let listed: string;
        try {
          ({ stdout: listed } = await promisify(execFile)(
            join(ROOT, "node_modules", ".bin", "tsc"),
            ["-p", project, "--pretty", "false", "--listFiles"],
            { encoding: "utf8" },
          ));
        } catch (err) {
          const { stdout, stderr } = err as { stdout: string; stderr: string };
          throw new Error(`tsc (${moduleResolution}): ${stdout}${stderr}`);
        }
        // Of the package, tsc read declarations only, those in dist/.
        const read = listed.split("\n")
          .filter((file) => file.startsWith(`${installed}/`))
          .map((file) => file.slice(installed.length + 1));
        assertEquals(
          read.filter((file) => !/^dist\/.*\.d\.ts$/.test(file)),
          [],
          moduleResolution,
        );
        const entries = sourceExports(installed);
        for (const entry of FOR_BUN_AND_NODE) {
          const source = entries[NAME + entry];
          const declarations = `dist/${source.slice(0, -".ts".length)}.d.ts`;
          assert(read.includes(declarations), `${moduleResolution}: ${entry}`);
        }
      }
    }),
  {
    skip: onlyUnder("bun", "tsc is the same program under either runtime"),
    timeout: 120_000,
  },
);

test(
  "package: the unpacked tarball behind an import map, two copies under Deno hand over; ./cli runs by name",
  () =>
    withPlace(async (place) => {
      const tarball = pack(place.tmp);
      execFileSync("tar", ["xzf", tarball, "-C", place.tmp]);
      // Every export of package.json, as the package name would resolve it
      // outside Bun.
      const imports = Object.fromEntries(
        Object.entries(sourceExports(join(place.tmp, "package"))).map((
          [name, source],
        ) => [name, `./package/${source}`]),
      );
      const importMap = join(place.tmp, "import_map.json");
      writeFileSync(importMap, JSON.stringify({ imports }));
      writeFileSync(join(place.tmp, "app.ts"), APP);
      writeFileSync(
        join(place.tmp, "status.ts"),
        `import { main } from "${NAME}/cli";\nDeno.exit(await main(Deno.args));\n`,
      );
      const flags = ["--no-lock", "--import-map", importMap];
      // The package type-checks on its own, through its names.
      execFileSync(runtimeBinary("deno"), [
        "check",
        ...flags,
        join(place.tmp, "app.ts"),
        join(place.tmp, "status.ts"),
      ], { stdio: ["ignore", "pipe", "pipe"] });
      const deno = (script: string, ...args: string[]): [string, string[]] => [
        runtimeBinary("deno"),
        ["run", "-A", ...flags, join(place.tmp, script), ...args],
      ];

      const owner = await upgradeBetweenCopies(
        place,
        (dir, port) => deno("app.ts", dir, String(port)),
      );

      const status = execFileSync(
        ...deno("status.ts", "status", place.dir, "--json"),
        { encoding: "utf8", cwd: place.tmp },
      );
      assertEquals(JSON.parse(status).owner.pids, [owner.pid]);
    }),
  {
    skip: onlyUnder("deno", "the import map is how Deno resolves the names"),
    timeout: 120_000,
  },
);
