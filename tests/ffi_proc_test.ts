import { spawn } from "node:child_process";
import {
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtime, scaled, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import {
  close,
  deviceNumbers,
  fdTarget,
  flock,
  flockHolder,
  getpid,
  listenOn,
  O_CREAT,
  O_RDWR,
  openFile,
  parseLocks,
  parseProcessStat,
  parseUnixSockets,
  processStat,
  socketPair,
} from "../ffi/mod.ts";
import { Child } from "./fixtures/ffi_child.ts";

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "tableroll procfs-"));
}

function socketInode(fd: number): number {
  return Number(fdTarget(fd).match(/^socket:\[(\d+)\]$/)![1]);
}

test(`procfs text (${runtime}): this machine's /proc/locks, with a flock held here and a process waiting for it`, async () => {
  const dir = tempDir();
  const path = join(dir, "pid");
  const fd = openFile(path, O_RDWR | O_CREAT);
  let waiter: Child | undefined;
  try {
    assert(flock(fd, "exclusive", { nonblocking: true }));
    waiter = new Child(runtime, "ffi_lock.ts", [path]);
    assertEquals(await waiter.nextLine(), "waiting");
    const { dev, ino } = statSync(path, { bigint: true });
    const [major, minor] = deviceNumbers(dev);
    const pid = waiter.process.pid!;
    const deadline = Date.now() + scaled(10_000);
    let text = readFileSync("/proc/locks", "utf8");
    while (!text.includes(`-> FLOCK  ADVISORY  WRITE ${pid} `)) {
      assert(Date.now() < deadline, `no waiter ${pid} in /proc/locks`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = readFileSync("/proc/locks", "utf8");
    }
    const locks = parseLocks(text);
    // Every line of the real table is a lock on a file (none is "<none>" here).
    assertEquals(
      locks.length,
      text.split("\n").filter((l) => /^\d+:/.test(l) && !l.includes("<none>"))
        .length,
    );
    const onFile = locks.filter((l) =>
      l.major === major && l.minor === minor && l.inode === ino
    );
    assertEquals(onFile, [
      {
        type: "FLOCK",
        access: "WRITE",
        pid: getpid(),
        major,
        minor,
        inode: ino,
        waiting: false,
      },
      {
        type: "FLOCK",
        access: "WRITE",
        pid,
        major,
        minor,
        inode: ino,
        waiting: true,
      },
    ]);
    assertEquals(flockHolder(dev, ino), getpid());
  } finally {
    await waiter?.kill("SIGKILL");
    close(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`procfs text (${runtime}): this machine's /proc/net/unix, with a path holding spaces, an abstract name and unbound sockets`, () => {
  const dir = tempDir();
  const path = join(dir, "control  socket.sock");
  const abstract = `tableroll procfs ${getpid()} ${runtime}`;
  const fds: number[] = [];
  try {
    const listener = listenOn({ family: "unix", path });
    fds.push(listener);
    const abstractListener = listenOn({ family: "unix", abstract });
    fds.push(abstractListener);
    const [a, b] = socketPair();
    fds.push(a, b);
    const text = readFileSync("/proc/net/unix", "utf8");
    const sockets = parseUnixSockets(text);
    // Every line but the header is a socket.
    assertEquals(sockets.length, text.trimEnd().split("\n").length - 1);
    const byInode = (fd: number) =>
      sockets.find((s) => s.inode === socketInode(fd));
    assertEquals(byInode(listener), {
      inode: socketInode(listener),
      path,
      listening: true,
      connected: false,
    });
    assertEquals(byInode(abstractListener), {
      inode: socketInode(abstractListener),
      path: `@${abstract}`,
      listening: true,
      connected: false,
    });
    assertEquals(byInode(a), {
      inode: socketInode(a),
      path: "",
      listening: false,
      connected: true,
    });
  } finally {
    for (const fd of fds) close(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`procfs text (${runtime}): this machine's /proc/<pid>/stat, for a command named with spaces and parentheses`, async () => {
  const dir = tempDir();
  // The kernel names a process after the file it executed: here a link.
  const command = "a) (b c)";
  symlinkSync("/bin/sleep", join(dir, command));
  const child = spawn(join(dir, command), ["30"], { stdio: "ignore" });
  try {
    const pid = child.pid!;
    const deadline = Date.now() + scaled(10_000);
    let text = readFileSync(`/proc/${pid}/stat`, "utf8");
    while (!text.includes(`(${command})`)) { // the exec is not done yet
      assert(Date.now() < deadline, `${pid} never ran ${command}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = readFileSync(`/proc/${pid}/stat`, "utf8");
    }
    const stat = parseProcessStat(text);
    assertEquals(stat.pid, pid);
    assertEquals(stat.command, command);
    // Asleep, running, or in an uninterruptible wait (loading its pages).
    assert(["S", "R", "D"].includes(stat.state), stat.state);
    // Field 22 counted from the start, the way proc(5) numbers it, once the
    // command is taken out.
    const fields = text.replace(`(${command})`, "comm").split(" ");
    assertEquals(stat.startTime, BigInt(fields[21]));
    // Read again: the state may have changed in between, the rest may not.
    assertEquals({ ...processStat(pid), state: stat.state }, stat);

    const self = parseProcessStat(readFileSync("/proc/self/stat", "utf8"));
    assertEquals(self.pid, getpid());
    assert(self.command !== "" && self.startTime > 0n);
  } finally {
    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});

test("procfs text: lock lines a waiter, an OFD lock without a pid and an inode-less lock", () => {
  const text = [
    "1: POSIX  ADVISORY  READ 14498 fe:00:16042566 128 128",
    "2: FLOCK  ADVISORY  WRITE 10 103:02:18446744073709551615 0 EOF",
    "2: -> FLOCK  ADVISORY  WRITE 11 103:02:18446744073709551615 0 EOF",
    "3: OFDLCK ADVISORY  WRITE -1 08:01:5 0 EOF",
    "4: FLOCK  ADVISORY  WRITE 12 <none> 0 EOF",
    "",
  ].join("\n");
  assertEquals(parseLocks(text), [
    {
      type: "POSIX",
      access: "READ",
      pid: 14498,
      major: 0xfe,
      minor: 0,
      inode: 16042566n,
      waiting: false,
    },
    {
      type: "FLOCK",
      access: "WRITE",
      pid: 10,
      major: 0x103,
      minor: 2,
      inode: 18446744073709551615n,
      waiting: false,
    },
    {
      type: "FLOCK",
      access: "WRITE",
      pid: 11,
      major: 0x103,
      minor: 2,
      inode: 18446744073709551615n,
      waiting: true,
    },
  ]);
  assertEquals(parseLocks(""), []);
});

test("procfs text: socket lines with a header, no path, a path with spaces, an abstract name", () => {
  const text = [
    "Num       RefCount Protocol Flags    Type St Inode Path",
    "00000000d79e0c48: 00000003 00000000 00000000 0001 03 6222791",
    "0000000016c3a944: 00000003 00000000 00000000 0001 03  1057",
    "0000000087c47056: 00000002 00000000 00010000 0001 01 6218011 /run/a  b c ",
    "000000000a1335ec: 00000002 00000000 00010000 0005 01 7 @/tmp/.X11-unix/X0",
    "000000000a1335ed: 00000003 00000000 00000000 0001 03 8 /run/a  b c ",
    "",
  ].join("\n");
  assertEquals(parseUnixSockets(text), [
    { inode: 6222791, path: "", listening: false, connected: true },
    { inode: 1057, path: "", listening: false, connected: true },
    { inode: 6218011, path: "/run/a  b c ", listening: true, connected: false },
    { inode: 7, path: "@/tmp/.X11-unix/X0", listening: true, connected: false },
    { inode: 8, path: "/run/a  b c ", listening: false, connected: true },
  ]);
});

test("procfs text: stat lines whose command holds spaces, parentheses or nothing", () => {
  const rest = "1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456789 0 0";
  assertEquals(parseProcessStat(`7 ((x) y)) S ${rest}`), {
    pid: 7,
    command: "(x) y)",
    state: "S",
    startTime: 123456789n,
  });
  assertEquals(parseProcessStat(`8 () Z ${rest}\n`).command, "");
  assertEquals(parseProcessStat(`8 () Z ${rest}\n`).state, "Z");
});

test("procfs text: st_dev decodes as glibc's major()/minor(), large numbers included", () => {
  // The real device of /dev/null: 1, 3.
  assertEquals(deviceNumbers(statSync("/dev/null", { bigint: true }).rdev), [
    1,
    3,
  ]);
  // gnu_dev_makedev(0x12345, 0x6789a): the major's high bits must not leak
  // into the minor (Linux's own numbers are 12 and 20 bits wide, glibc's 32).
  const makedev = (major: bigint, minor: bigint) =>
    ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) |
    ((minor & ~0xffn) << 12n);
  assertEquals(deviceNumbers(makedev(0x12345n, 0x6789an)), [0x12345, 0x6789a]);
  assertEquals(deviceNumbers(0xfe00), [0xfe, 0]);
});
