/** The PID file of `useSystemd()`, in this process. */
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { assertEquals } from "./support/assert.ts";
import { Upgrader } from "../mod.ts";
import { useSystemd } from "../systemd/mod.ts";

async function withOwner(
  body: (upgrader: Upgrader, pidFile: string, tmp: string) => Promise<void>,
): Promise<void> {
  const tmp = mkdtempSync("/tmp/tr-");
  const dir = join(tmp, "c");
  mkdirSync(dir, { mode: 0o700 });
  const pidFile = join(tmp, "service.pid");
  const upgrader = await Upgrader.create(dir);
  useSystemd(upgrader, { pidFile, activation: false, notify: false });
  try {
    await body(upgrader, pidFile, tmp);
  } finally {
    await upgrader.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

test(`pid file (${runtime}): written by the owner at ready(), through a renamed temporary file, removed at stop()`, () =>
  withOwner(async (upgrader, pidFile, tmp) => {
    assertEquals(readdirSync(tmp).sort(), ["c"], "nothing before ready()");
    await upgrader.ready();
    assertEquals(readFileSync(pidFile, "utf8"), `${process.pid}\n`);
    assertEquals(readdirSync(tmp).sort(), ["c", "service.pid"]);
    await upgrader.stop();
    assertEquals(readdirSync(tmp).sort(), ["c"]);
  }));

test(`pid file (${runtime}): a file naming another process is left alone at stop()`, () =>
  withOwner(async (upgrader, pidFile) => {
    await upgrader.ready();
    writeFileSync(pidFile, "4711\n");
    await upgrader.stop();
    assertEquals(readFileSync(pidFile, "utf8"), "4711\n");
  }));
