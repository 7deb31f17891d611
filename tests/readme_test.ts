/**
 * The README's first program, exactly as printed: one copy under the other
 * runtime, a second under this suite's with the same directory and port; the
 * second takes over and the first drains and exits 0. SIGTERM stops the
 * second: it exits 0 and leaves no control socket behind.
 */
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assertEquals } from "./support/assert.ts";
import { commandLine, ROOT } from "../testing/copies.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { freePort } from "../testing/rolling.ts";

const TIMEOUT_MS = 20_000;

/** The first TypeScript block of the README. */
function firstProgram(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const [, program] = /```ts\n([\s\S]*?)```/.exec(readme)!;
  return program;
}

const other = runtime === "deno" ? "bun" : "deno";

test(
  `readme: the first program runs unchanged under ${other} then ${runtime}, they hand over, and SIGTERM stops it cleanly`,
  async () => {
    // Inside the repository, where the package's own name resolves to its
    // sources on both runtimes.
    mkdirSync(join(ROOT, ".tmp"), { recursive: true });
    const tmp = mkdtempSync(join(ROOT, ".tmp", "readme-"));
    const group = new ProcessGroup();
    try {
      const script = join(tmp, "hello.ts").slice(ROOT.length);
      writeFileSync(join(ROOT, script), firstProgram());
      const dir = join(tmp, "dir");
      mkdirSync(dir, { mode: 0o700 });
      const port = String(await freePort());
      const start = async (runtime: "deno" | "bun") => {
        const child = group.spawn(...commandLine(runtime, script, [dir, port]));
        await child.waitForLine(/ ready$/, TIMEOUT_MS);
        return child;
      };
      const ask = async () =>
        (await (await fetch(`http://127.0.0.1:${port}/`)).text()).trim();

      const first = await start(other);
      assertEquals(await ask(), `hello from ${first.pid}`);
      const second = await start(runtime);
      assertEquals((await first.exited).code, 0, first.stderrTail);
      assertEquals(await ask(), `hello from ${second.pid}`);

      second.kill("SIGTERM");
      assertEquals((await second.exited).code, 0, second.stderrTail);
      assertEquals(
        readdirSync(dir).filter((name) => name.endsWith(".sock")),
        [],
        "control sockets left behind",
      );
    } finally {
      await group.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  },
  { timeout: 60_000 },
);
