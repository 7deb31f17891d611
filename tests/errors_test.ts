/**
 * One error class: no entry point exports another, the FFI layer's errors
 * leave public calls as a TablerollError with a code, and importing the
 * root to catch it needs no FFI permission.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { close, listenOn, localAddress } from "../ffi/mod.ts";
import { TablerollError, Upgrader } from "../mod.ts";
import { ROOT, runtimeBinary } from "../testing/copies.ts";

test("errors: TablerollError is the only error class of any entry point", async () => {
  const entries = ["mod.ts", "adapters/serve/mod.ts", "systemd/mod.ts"];
  entries.push("self_upgrade/mod.ts", "cli/mod.ts");
  entries.push(
    runtime === "deno" ? "adapters/deno/mod.ts" : "adapters/bun/mod.ts",
  );
  for (const entry of entries) {
    const exported = Object.entries(await import(`../${entry}`));
    const errors = exported.filter(([, value]) =>
      typeof value === "function" && value.prototype instanceof Error
    ).map(([name]) => name);
    assertEquals(
      errors,
      entry === "mod.ts" ? ["TablerollError"] : [],
      `error classes of ${entry}`,
    );
  }
});

test(`errors (${runtime}): a failed system call and a bad address leave a public call as a TablerollError`, async () => {
  const dir = mkdtempSync("/tmp/tr-");
  const taken = listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 });
  const upgrader = await Upgrader.create(dir);
  try {
    const { port } = localAddress(taken) as { port: number };
    const busy = assertThrows(
      () => upgrader.fds.listen("web", { hostname: "127.0.0.1", port }),
      "system",
      "EADDRINUSE",
    );
    assertEquals([busy.syscall, busy.errno], ["bind", "EADDRINUSE"]);
    assert(busy.cause instanceof Error, "the FFI layer's error is the cause");
    assertThrows(
      () => upgrader.fds.listen("web", { hostname: "1.2.3", port: 1 }),
      "bad-address",
    );
  } finally {
    await upgrader.stop();
    close(taken);
    rmSync(dir, { recursive: true });
  }
});

test(
  "errors (deno): the root imports, and its error is caught, without --allow-ffi",
  () => {
    const program = join(mkdtempSync("/tmp/tr-"), "catch.ts");
    writeFileSync(
      program,
      `import { TablerollError } from ${JSON.stringify(`${ROOT}mod.ts`)};
const err = new TablerollError("timeout", "late");
console.log(err instanceof TablerollError && err.code === "timeout" ? "caught" : "missed");`,
    );
    try {
      const run = spawnSync(runtimeBinary("deno"), [
        "run",
        "--no-prompt",
        `--allow-read=${ROOT}`,
        program,
      ], { encoding: "utf8" });
      assertEquals(run.stdout.trim(), "caught", run.stderr);
    } finally {
      rmSync(join(program, ".."), { recursive: true });
    }
  },
  { skip: onlyUnder("deno", "--allow-ffi is a Deno permission") },
);

test("errors: TablerollError keeps what it was made with", () => {
  const cause = new Error("below");
  const err = new TablerollError("protocol", "garbled", { cause });
  assertEquals(
    [err.name, err.code, err.message, err.cause],
    ["TablerollError", "protocol", "garbled", cause],
  );
});
