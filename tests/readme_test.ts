/**
 * The README's first program, exactly as printed: one copy under Deno, a
 * second under Bun with the same directory and port; the second takes over
 * and the first drains and exits 0.
 */
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "./support/harness.ts";
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

test(
  "readme: the first program runs unchanged with deno run and with bun, and they hand over",
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

      const first = await start("deno");
      assertEquals(await ask(), `hello from ${first.pid}`);
      const second = await start("bun");
      assertEquals((await first.exited).code, 0, first.stderrTail);
      assertEquals(await ask(), `hello from ${second.pid}`);
    } finally {
      await group.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  },
  { timeout: 60_000 },
);
