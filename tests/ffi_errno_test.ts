import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "./support/harness.ts";
import { assertEquals, assertThrows } from "./support/assert.ts";
import {
  bind,
  close,
  connect,
  flock,
  libc,
  listenOn,
  localAddress,
  LOCK_EX,
  LOCK_NB,
  O_CREAT,
  O_RDWR,
  openFile,
  openSocket,
  read,
  type SocketAddress,
  socketPair,
  SyscallError,
  waitReadable,
  writeAll,
} from "../ffi/mod.ts";

/** A descriptor number far above any open one. */
const NEVER_OPEN = 1 << 20;

/** Runs `fn`, which must fail, and returns what the error reports. */
function failure(fn: () => unknown): [string, string, number] {
  const err = assertThrows(fn, SyscallError);
  return [err.syscall, err.code, err.errno];
}

/** The failures this file provokes, each set up once. */
class Provoked implements Disposable {
  readonly dir = mkdtempSync(join(tmpdir(), "tableroll-errno-"));
  readonly tcp = listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 });
  readonly usedPort: SocketAddress = localAddress(this.tcp);
  readonly missingPath = join(this.dir, "missing.sock");
  readonly deadPath = join(this.dir, "dead.sock");
  readonly lockPath = join(this.dir, "lock");
  readonly holder = openFile(this.lockPath, O_RDWR | O_CREAT);
  readonly contender = openFile(this.lockPath, O_RDWR);

  constructor() {
    // A socket file whose socket was closed without listening: ECONNREFUSED.
    const dead = openSocket("unix", "stream");
    bind(dead, { family: "unix", path: this.deadPath });
    close(dead);
    flock(this.holder, "exclusive");
  }

  /** Connects a fresh Unix socket to `path`, closing it whatever happens. */
  connectUnix(path: string): void {
    const fd = openSocket("unix", "stream");
    try {
      connect(fd, { family: "unix", path });
    } finally {
      close(fd);
    }
  }

  [Symbol.dispose](): void {
    [this.tcp, this.holder, this.contender].forEach(close);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

test("ffi: provoked failures carry the right errno names", () => {
  using p = new Provoked();
  assertEquals(failure(() => listenOn(p.usedPort)), [
    "bind",
    "EADDRINUSE",
    98,
  ]);
  assertEquals(failure(() => p.connectUnix(p.missingPath)), [
    "connect",
    "ENOENT",
    2,
  ]);
  assertEquals(failure(() => p.connectUnix(p.deadPath)), [
    "connect",
    "ECONNREFUSED",
    111,
  ]);
  assertEquals(flock(p.contender, "exclusive", { nonblocking: true }), false);
  // EWOULDBLOCK is EAGAIN on Linux.
  assertEquals(failure(() => libc.flock(p.contender, LOCK_EX | LOCK_NB)), [
    "flock",
    "EAGAIN",
    11,
  ]);
  assertEquals(failure(() => close(NEVER_OPEN)), ["close", "EBADF", 9]);
});

test("ffi: errno stays right over thousands of failures under GC pressure and SIGIO wake-ups", async () => {
  using p = new Provoked();
  // Exclusive waits are woken by SIGIO meanwhile: the runtime's signal
  // handler runs between calls and must leave errno alone.
  const [a, b] = socketPair();
  const cases: [() => unknown, string][] = [
    [() => listenOn(p.usedPort), "EADDRINUSE"],
    [() => p.connectUnix(p.missingPath), "ENOENT"],
    [() => close(NEVER_OPEN), "EBADF"],
    [() => libc.flock(p.contender, LOCK_EX | LOCK_NB), "EAGAIN"],
    [() => p.connectUnix(p.deadPath), "ECONNREFUSED"],
  ];
  let garbage: unknown[] = [];
  const wrong: string[] = [];
  let readable = waitReadable(b, { exclusive: true });
  writeAll(a, new Uint8Array([1]));
  for (let i = 0; i < 4000; i++) {
    if (i % 100 === 99) {
      await readable;
      read(b, 1);
      readable = waitReadable(b, { exclusive: true });
      writeAll(a, new Uint8Array([1]));
    }
    // Enough short-lived allocation to run the collector many times over.
    garbage.push(
      new Uint8Array(16384),
      { i, text: `allocation ${i}`.repeat(8) },
      Array.from({ length: 64 }, (_, j) => ({ j })),
    );
    if (garbage.length > 300) garbage = [];
    const [provoke, expected] = cases[(i * 7) % cases.length];
    try {
      provoke();
      wrong.push(`${i}: ${expected} expected, the call succeeded`);
    } catch (err) {
      const code = err instanceof SyscallError ? err.code : String(err);
      if (code !== expected) wrong.push(`${i}: ${expected} expected, ${code}`);
    }
  }
  await readable;
  [a, b].forEach(close);
  assertEquals(wrong, []);
});
