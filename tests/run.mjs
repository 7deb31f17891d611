#!/usr/bin/env node
// Runs the whole suite under Deno and under Bun, streams both outputs, lists
// each runtime's skipped tests with their reasons, and ends with one line
// "N passed, N failed" totalled over both runtimes.
// Usage: node tests/run.mjs [deno|bun] [test files…] [-- extra test-runner args]
// TABLEROLL_DENO / TABLEROLL_BUN replace the pinned runtime binaries (the
// runners and every process the tests spawn), as .ci/aarch64 does;
// TABLEROLL_RUNNER_DENO / TABLEROLL_RUNNER_BUN replace only the runners, as
// .ci/matrix does to run the library's processes on another version.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const bin = (name) =>
  process.env[`TABLEROLL_RUNNER_${name.toUpperCase()}`] ||
  process.env[`TABLEROLL_${name.toUpperCase()}`] ||
  join(root, "node_modules", ".bin", name);
const args = process.argv.slice(2);
const split = args.includes("--") ? args.indexOf("--") : args.length;
const only = args.slice(0, split).find((a) => a === "deno" || a === "bun");
const files = args.slice(0, split).filter((a) => a !== only);
const filter = args.slice(split + 1);
const paths = files.length ? files : ["tests/"];

const suites = {
  deno: [bin("deno"), [
    "test",
    "--allow-all",
    "--parallel",
    ...filter,
    ...paths,
  ]],
  // Bun takes a bare argument as a name filter, a "./" one as a path.
  bun: [bin("bun"), [
    "test",
    "--timeout",
    "120000",
    ...filter,
    ...paths.map((p) => p.startsWith("/") ? p : `./${p.replace(/^\.\//, "")}`),
  ]],
};

function run(name, [cmd, cmdArgs]) {
  return new Promise((resolve) => {
    const child = spawn(cmd, cmdArgs, {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", DENO_JOBS: "2" },
    });
    const text = { stdout: "", stderr: "" };
    const tee = (stream, out) =>
      child[stream].on("data", (chunk) => {
        out.write(chunk);
        text[stream] += chunk;
      });
    tee("stdout", process.stdout);
    tee("stderr", process.stderr);
    child.on("close", (code) => {
      // Each stream whole: a line of one is never cut by the other.
      const all = `${text.stdout}\n${text.stderr}`;
      const results = countResults(name, all, code);
      listSkipped(name, all);
      resolve(results);
    });
  });
}

function countResults(name, text, code) {
  let passed = 0, failed = 0, skipped = 0;
  const deno = text.match(
    /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed(?: \| (\d+) ignored)?/,
  );
  const bunPass = text.match(/^\s*(\d+) pass$/m);
  const bunFail = text.match(/^\s*(\d+) fail$/m);
  const bunSkip = text.match(/^\s*(\d+) skip$/m);
  if (deno) {
    [passed, failed, skipped] = deno.slice(1).map((n) => Number(n ?? 0));
  } else if (bunPass && bunFail) {
    [passed, failed] = [Number(bunPass[1]), Number(bunFail[1])];
    skipped = Number(bunSkip?.[1] ?? 0);
  }
  // A runner that crashed or reported nothing counts as one failure.
  if ((code !== 0 && failed === 0) || passed + failed === 0) failed += 1;
  console.log(
    `${name}: ${passed} passed, ${failed} failed, ${skipped} skipped (exit ${code})`,
  );
  return { passed, failed };
}

// The harness prints `skipped "<name>": <reason>` for each test it skips.
function listSkipped(name, text) {
  const lines = new Set(text.match(/^skipped ".*": .*$/gm));
  if (lines.size === 0) return;
  console.log(`${name}: skipped tests, with their reasons:`);
  for (const line of lines) console.log(`  ${line.slice("skipped ".length)}`);
}

let passed = 0, failed = 0;
for (const [name, suite] of Object.entries(suites)) {
  if (only && name !== only) continue;
  const r = await run(name, suite);
  passed += r.passed;
  failed += r.failed;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
