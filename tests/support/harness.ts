/**
 * One test API for both runtimes: `Deno.test` under Deno, `bun:test` under
 * Bun. Test files import {@linkcode test} from here and run unchanged on both.
 *
 * @module
 */
import process from "node:process";

/** A test body. */
export type TestFn = () => void | Promise<void>;

/** Options of {@linkcode test}. */
export interface TestOptions {
  /** Upper bound of the test's run time in milliseconds (default 60 000). */
  timeout?: number;
  /**
   * Skip the test and say why: what this runtime, this machine or this user
   * lacks. The reason is printed under both runtimes; `undefined` runs it.
   */
  skip?: string;
}

type BunTest = ((name: string, fn: TestFn, timeout?: number) => void) & {
  skip(name: string, fn: TestFn): void;
};

/**
 * Tests this machine cannot pass, by name, with the reason: the JSON object
 * `{"<test name>": "<reason>"}` in `TABLEROLL_SKIP` (set by `.ci/aarch64`
 * for what qemu-user cannot emulate).
 */
const SKIPPED: Record<string, string> = JSON.parse(
  process.env.TABLEROLL_SKIP || "{}",
);

/** Multiplies every time limit; emulated runs (`.ci/aarch64`) are several times slower. */
const TIMEOUT_SCALE = Number(process.env.TABLEROLL_TIMEOUT_SCALE || 1);

/** `ms` scaled like the tests' time limits, for a test's own deadlines. */
export function scaled(ms: number): number {
  return ms * TIMEOUT_SCALE;
}

const bunTest: BunTest | undefined = "Bun" in globalThis
  ? (await import("bun:" + "test") as { test: BunTest }).test
  : undefined;

// The library's readiness-signal listener lives as long as the process, by design: it
// is installed here, before the first test, so that Deno's resource
// sanitizer does not charge it to whichever test first waits on a socket.
// So are the libc functions the FFI layer binds on first use: Deno before
// 2.8 counts each library handle opened during a test as a leak.
if (!bunTest) {
  const { backend, close, socketPair, waitReadable, writeAll } = await import(
    "../../ffi/mod.ts"
  );
  const { fn } = backend();
  for (const name in fn) void fn[name as keyof typeof fn];
  const [a, b] = socketPair();
  const readable = waitReadable(b, { exclusive: true });
  writeAll(a, new Uint8Array([0]));
  await readable;
  close(a);
  close(b);
}

/** `"deno"` or `"bun"`: the runtime running the tests. */
export const runtime: "deno" | "bun" = bunTest ? "bun" : "deno";

/**
 * The `skip` reason of a test that means something only under `only` (`why`
 * says what it needs of that runtime), `undefined` under `only` itself.
 */
export function onlyUnder(
  only: "deno" | "bun",
  why: string,
): string | undefined {
  if (runtime === only) return undefined;
  return `${only === "deno" ? "Deno" : "Bun"} only: ${why}`;
}

/**
 * Registers a test with the running runtime's test runner; a skipped one is
 * registered as skipped (Deno's "ignored", Bun's "skip"), its reason printed
 * as `skipped "<name>": <reason>`.
 */
export function test(
  name: string,
  fn: TestFn,
  options: TestOptions = {},
): void {
  const timeout = scaled(options.timeout ?? 60_000);
  const skip = SKIPPED[name] ?? options.skip;
  if (skip !== undefined) console.error(`skipped "${name}": ${skip}`);
  if (bunTest) {
    if (skip !== undefined) bunTest.skip(name, fn);
    else bunTest(name, fn, timeout);
    return;
  }
  Deno.test({
    name,
    ignore: skip !== undefined,
    // Deno's op and resource sanitizers stay on (the defaults): a test
    // leaves no timer, pending operation or resource behind.
    fn: () => withTimeout(fn(), timeout, name),
  });
}

async function withTimeout(
  result: void | Promise<void>,
  ms: number,
  name: string,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      result,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`test "${name}" timed out after ${ms} ms`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
