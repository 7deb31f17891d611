/**
 * `spawnDetached`, `reapChild`, `sendSignal` and `commandLine` with real
 * processes (`sh`), under the suite's runtime.
 */
import { readFileSync } from "node:fs";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import { until } from "./support/until.ts";
import {
  close,
  commandLine,
  pipe,
  read,
  reapChild,
  sendSignal,
  setNonBlocking,
  spawnDetached,
  SyscallError,
} from "../ffi/mod.ts";

/** Runs `script` with `sh`, its stdout into a pipe; resolves with what it wrote and how it ended. */
async function sh(
  script: string,
  env: Record<string, string> = { PATH: "/usr/bin:/bin" },
): Promise<{ out: string; ended: ReturnType<typeof reapChild> }> {
  const [readEnd, writeEnd] = pipe();
  const pid = spawnDetached({
    file: "sh",
    argv: ["sh", "-c", script],
    env,
    dup2: [[writeEnd, 1]],
  });
  close(writeEnd);
  const ended = await until(() => reapChild(pid) ?? undefined, `sh ${pid}`);
  setNonBlocking(readEnd, true);
  const out = new TextDecoder().decode(read(readEnd, 65536) ?? undefined);
  close(readEnd);
  return { out, ended };
}

test(`ffi (${runtime}): spawnDetached starts a program in its own session with exactly the environment given`, async () => {
  const { out, ended } = await sh(
    'echo "$$ $(cut -d" " -f6 /proc/$$/stat)"; env | sort',
    { PATH: "/usr/bin:/bin", ONLY: "this" },
  );
  const [ids, ...env] = out.trim().split("\n");
  const [pid, session] = ids.split(" ");
  assertEquals(session, pid, "it leads its own session");
  assertEquals(ended?.pid, Number(pid));
  assertEquals(ended?.code, 0);
  assert(env.includes("ONLY=this"), env.join(","));
  assert(!env.some((line) => line.startsWith("HOME=")), "nothing else leaks");
});

test(`ffi (${runtime}): a spawned program starts with every signal unblocked and at its default action`, async () => {
  // grep reads its own status (through sh, the mask would be sh's of the moment).
  const { out } = await sh("exec grep -E '^Sig(Blk|Ign)' /proc/self/status");
  assertEquals(out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
});

test(`ffi (${runtime}): reapChild reports an exit status and a killing signal`, async () => {
  assertEquals((await sh("exit 3")).ended?.code, 3);
  const pid = spawnDetached({
    file: "sleep",
    argv: ["sleep", "30"],
    env: { PATH: "/usr/bin:/bin" },
  });
  assertEquals(reapChild(pid), null, "it still runs");
  assert(sendSignal(pid, 9));
  const ended = await until(() => reapChild(pid) ?? undefined, "sleep");
  assertEquals(ended, { pid, signal: 9 });
  assertEquals(sendSignal(pid, 0), false, "a reaped pid is gone");
  assertThrows(() => reapChild(pid), SyscallError, "ECHILD");
});

test(`ffi (${runtime}): spawning a missing program is a SyscallError`, () => {
  const err = assertThrows(
    () =>
      spawnDetached({
        file: "/nonexistent/program",
        argv: ["x"],
        env: {},
      }),
    SyscallError,
  );
  assertEquals(err.code, "ENOENT");
});

test(`ffi (${runtime}): commandLine() is this process's argument vector`, () => {
  const raw = readFileSync(`/proc/${process.pid}/cmdline`, "utf8");
  assertEquals(commandLine(), raw.replace(/\0$/, "").split("\0"));
  assert(commandLine()[0].endsWith(runtime === "deno" ? "deno" : "bun"));
});
