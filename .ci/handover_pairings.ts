/**
 * One handover of `examples/hello.ts` under light loopback load per
 * pairing: by default the four Deno/Bun pairings (Deno→Deno, Deno→Bun,
 * Bun→Deno, Bun→Bun) on the binaries `TABLEROLL_DENO` / `TABLEROLL_BUN` name
 * (see `testing/copies.ts`; `.ci/aarch64` points them at emulated aarch64
 * builds), or the pairings given as `FROM,TO`, each `deno` or `bun`
 * optionally followed by `@BINARY` (`.ci/matrix` hands over between runtime
 * versions that way). Prints one line per pairing, ends with
 * `N passed, N failed` and exits non-zero if any pairing lost a request or
 * did not hand over.
 *
 * Usage: deno run -A .ci/handover_pairings.ts [TIMEOUT_MS] [FROM,TO]…
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import process from "node:process";
import { runtimeBinary } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { succeeded, summary } from "../testing/report.ts";
import { runRollingUpgrade } from "../testing/rolling.ts";

/** The runtime and binary of one side of a pairing. */
interface Side {
  runtime: "deno" | "bun";
  binary: string;
}

const [timeoutArg, ...pairArgs] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg ?? 60_000);
const pairings: [Side, Side][] = pairArgs.length > 0
  ? pairArgs.map((arg) => arg.split(",").map(side) as [Side, Side])
  : (["deno", "bun"] as const).flatMap((from) =>
    (["deno", "bun"] as const).map((to): [Side, Side] => [
      side(from),
      side(to),
    ])
  );

let passed = 0, failed = 0;
for (const [from, to] of pairings) {
  const group = new ProcessGroup();
  try {
    const sides = [from, to];
    const run = runRollingUpgrade({
      group,
      runtimeOf: (i) => sides[i].runtime,
      binaryOf: (i) => sides[i].binary,
      upgrades: 1,
      intervalMs: 1_000,
      delay: 5,
      load: {
        keepAliveClients: 1,
        newConnectionClients: 1,
        rate: 50,
        maxRequests: 10_000,
      },
      timeoutMs,
    });
    await run.done;
    const ok = succeeded(run);
    if (ok) passed++;
    else failed++;
    // The first line of the summary: requests and failures.
    console.log(
      `handover ${label(from)} -> ${label(to)}: ${ok ? "ok" : "FAILED"}; ${
        summary(run).split("\n")[0]
      }`,
    );
    if (!ok) console.log(summary(run));
  } finally {
    await group.close();
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

/** `deno`, `bun`, `deno@BINARY` or `bun@BINARY` as a {@linkcode Side}. */
function side(spec: string): Side {
  const [runtime, binary] = spec.split("@");
  if (runtime !== "deno" && runtime !== "bun") {
    throw new Error(
      `bad side ${JSON.stringify(spec)}: deno[@BINARY] or bun[@BINARY]`,
    );
  }
  return { runtime, binary: binary || runtimeBinary(runtime) };
}

/** `deno 2.9.6`: the runtime and the version its binary reports. */
function label({ runtime, binary }: Side): string {
  const version = execFileSync(binary, ["--version"], { encoding: "utf8" })
    .split("\n")[0].replace(/^deno /, "").replace(/ \(.*/, "");
  return `${runtime} ${version}`;
}
