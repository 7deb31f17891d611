/**
 * A program that knows the library only by its package name, and two copies
 * of it handing over: what the package tests run wherever the package comes
 * from (the npm tarball, a clone).
 *
 * @module
 */
import type { Child } from "../../testing/processes.ts";
import { freePort } from "../../testing/rolling.ts";
import type { Place } from "../fixtures/place.ts";
import { assertEquals } from "./assert.ts";

/** The package's name. */
export const NAME = "@tableroll/tableroll";

/**
 * The program: `app.ts DIR PORT` serves its pid on PORT, prints `READY pid`
 * once the owner, and `DRAINED pid` after a successor took over and its
 * drain ended, then exits 0.
 */
export const APP = `import process from "node:process";
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
 * Runs two copies of the program with `command(dir, port)`: the second
 * takes over, the first drains and exits 0, and the port answers from the
 * second. Resolves with the second, the owner.
 */
export async function upgradeBetweenCopies(
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
