import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assertEquals } from "./support/assert.ts";
import {
  close,
  fileIdentity,
  flock,
  flockHolder,
  flockHolderAmong,
  flockHolderThrough,
  getpid,
  O_CREAT,
  O_RDWR,
  openFile,
} from "../ffi/mod.ts";
import { Child, RUNTIMES } from "./fixtures/ffi_child.ts";

/** The runtime that is not running the tests. */
const other = RUNTIMES.find((r) => r !== runtime)!;

test(`ffi: flock held by ${runtime} is exclusive, and freed for ${other} when its holder is SIGKILLed`, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-flock-"));
  const path = join(dir, "lock");
  // One runtime holds the lock while the other waits for it.
  const holder = new Child(runtime, "ffi_lock.ts", [path]);
  let waiter: Child | undefined;
  let fd = -1;
  try {
    assertEquals(await holder.nextLine(), "waiting");
    assertEquals(await holder.nextLine(), "locked");
    fd = openFile(path, O_RDWR);
    // Found among the holder's own descriptors as in /proc/locks; this
    // process has the file open but holds no lock on it.
    const { dev, ino } = fileIdentity(fd);
    const holderPid = holder.process.pid!;
    assertEquals(flockHolderAmong(holderPid, dev, ino, 64), holderPid);
    assertEquals(flockHolder(dev, ino), holderPid);
    assertEquals(flockHolderAmong(getpid(), dev, ino, 4096), null);
    assertEquals(flockHolderAmong(holderPid, dev, ino, 0), undefined);
    assertEquals(flock(fd, "exclusive", { nonblocking: true }), false);
    assertEquals(flock(fd, "shared", { nonblocking: true }), false);

    const second = waiter = new Child(other, "ffi_lock.ts", [path]);
    assertEquals(await second.nextLine(), "waiting");
    const acquired = second.nextLine();
    // Still blocked after the holder had ample time to release by mistake.
    const early = await Promise.race([
      acquired,
      new Promise((resolve) => setTimeout(resolve, 300, "still waiting")),
    ]);
    assertEquals(early, "still waiting");

    holder.kill("SIGKILL");
    assertEquals((await holder.exited).signal, "SIGKILL");
    assertEquals(await acquired, "locked");
    assertEquals(flock(fd, "exclusive", { nonblocking: true }), false);

    second.kill("SIGKILL");
    await second.exited;
    assertEquals(flock(fd, "exclusive", { nonblocking: true }), true);
  } finally {
    await holder.kill("SIGKILL");
    await waiter?.kill("SIGKILL");
    if (fd >= 0) close(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`ffi: ${runtime} sees its own exclusive flock through the descriptor holding it, as /proc/locks shows it`, () => {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-flock-"));
  const path = join(dir, "lock");
  const fd = openFile(path, O_RDWR | O_CREAT, 0o600);
  const other = openFile(path, O_RDWR);
  try {
    const { dev, ino } = fileIdentity(fd);
    assertEquals(flockHolderThrough(fd), null);
    assertEquals(flock(fd, "shared"), true);
    assertEquals(flockHolderThrough(fd), null); // shared is not exclusive
    assertEquals(flock(fd, "exclusive"), true);
    assertEquals(flockHolderThrough(fd), getpid());
    assertEquals(flockHolder(dev, ino), getpid());
    assertEquals(flockHolderThrough(other), null); // held through fd only
  } finally {
    close(other);
    close(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});
