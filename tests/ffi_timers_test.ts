/**
 * The library's own timers: what keeps a process alive and what does not,
 * in a process that has nothing else to do.
 */
import { runtime, scaled, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { Child } from "./fixtures/ffi_child.ts";

/**
 * Runs the fixture with `args` (killed after 15 s, scaled for slow
 * machines); how it exited, the lines it printed and how long it lived.
 */
async function run(...args: string[]) {
  const started = performance.now();
  const child = new Child(runtime, "ffi_timers.ts", args);
  const limit = setTimeout(() => child.kill("SIGKILL"), scaled(15_000));
  try {
    const exit = await child.exited;
    const ms = performance.now() - started;
    const lines: string[] = [];
    for (;;) {
      try {
        lines.push(await child.nextLine());
      } catch {
        return { exit, lines, ms }; // no line left
      }
    }
  } finally {
    clearTimeout(limit);
    await child.kill("SIGKILL");
  }
}

test(`ffi: a keepAlive hold keeps a ${runtime} process alive until released`, async () => {
  const { exit, lines, ms } = await run("hold");
  assertEquals(exit, { code: 0, signal: null });
  assertEquals(lines, ["released"]);
  assert(ms >= 300, `lived ${ms} ms`);
});

test(`ffi: an everyUnref ticker does not keep a ${runtime} process alive`, async () => {
  const { exit, lines } = await run("tick");
  assertEquals(exit, { code: 0, signal: null });
  assertEquals(lines, []); // ended before the first tick, a second away
});

test(`ffi: delay keeps a ${runtime} process alive until it resolves`, async () => {
  const { exit, lines, ms } = await run("delay");
  assertEquals(exit, { code: 0, signal: null });
  assertEquals(lines, ["slept"]);
  assert(ms >= 200, `lived ${ms} ms`);
});

test(`ffi: an aborted delay rejects with the reason and holds a ${runtime} process no longer`, async () => {
  // Well past how long the process takes to start and end, even emulated.
  const delayMs = scaled(10_000);
  const { exit, lines, ms } = await run("abort", String(delayMs));
  assertEquals(exit, { code: 0, signal: null });
  assertEquals(lines, ["aborted enough"]);
  assert(ms < delayMs * 0.9, `lived ${ms} ms`);
});
