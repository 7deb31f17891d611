/**
 * The published package as a user gets it: `npm pack`, then, outside the
 * repository, an npm install of the tarball (Bun) or the unpacked tarball
 * behind an import map (Deno), and two copies of a small program that
 * imports the package by name hand over to each other.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { onlyUnder, test } from "./support/harness.ts";
import { sourceExports } from "./support/package_exports.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { type Place, withPlace } from "./fixtures/place.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import type { Child } from "../testing/processes.ts";

const NAME = "@tableroll/tableroll";

/** The program both copies run: it knows the library only by its package name. */
const APP = `import process from "node:process";
import { Upgrader } from "${NAME}";
import { serve } from "${NAME}/serve";

const [dir, port] = process.argv.slice(2);
const upgrader = await Upgrader.create(dir);
const server = await serve({
  upgrader,
  name: "web",
  hostname: "127.0.0.1",
  port: Number(port),
  handler: () => new Response(\`\${process.pid}\\n\`),
  onListen() {},
});
await upgrader.ready();
console.log(\`READY \${process.pid}\`);
await server.finished; // after a successor took over and the drain ended
await upgrader.stop();
console.log(\`DRAINED \${process.pid}\`);
process.exit(0);
`;

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

/** Packs the repository into `dest` as npm would publish it; returns the tarball's path. */
function pack(dest: string): string {
  const out = execFileSync(
    "npm",
    ["pack", "--json", "--pack-destination", dest],
    { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
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
  return join(dest, filename);
}

/** Starts a copy of the program with `args` and waits for its READY line. */
async function startCopy(
  { group }: Place,
  command: [string, string[]],
): Promise<Child> {
  const child = group.spawn(...command);
  await child.waitForLine(/^READY \d+$/, 30_000);
  return child;
}

/** Which process answers on `port`. */
async function whoAnswers(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  return Number((await res.text()).trim());
}

/**
 * Runs two copies with `command(dir, port)`: the second takes over, the
 * first drains and exits 0, the port answers from the second throughout.
 */
async function upgradeBetweenCopies(
  place: Place,
  command: (dir: string, port: number) => [string, string[]],
): Promise<Child> {
  const port = await freePort();
  const first = await startCopy(place, command(place.dir, port));
  assertEquals(await whoAnswers(port), first.pid);
  const second = await startCopy(place, command(place.dir, port));
  await first.waitForLine(/^DRAINED \d+$/, 30_000);
  assertEquals((await first.exited).code, 0, first.stderrTail);
  assertEquals(await whoAnswers(port), second.pid);
  return second;
}

test(
  "package: installed from the npm tarball outside the repository, two copies under Bun hand over; its bin reads the directory",
  () =>
    withPlace(async (place) => {
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
