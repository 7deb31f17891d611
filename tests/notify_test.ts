/**
 * Service manager notification: a datagram socket of the test's own stands
 * in for systemd's `$NOTIFY_SOCKET` and receives, with the sender's
 * credentials (`SO_PASSCRED`, as systemd reads them), what the copies of
 * `examples/hello.ts` send across a self-upgrade, an external takeover and
 * a stop, and what a successor sends when its predecessor stays.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { commandLine, ROOT, runtimeBinary } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { Peer } from "./fixtures/upgrader_peers.ts";
import {
  backend,
  bindDatagram,
  close,
  setIntOption,
  setNonBlocking,
  type SocketAddress,
} from "../ffi/mod.ts";
import { IOVEC, MSG_DONTWAIT, MSGHDR } from "../ffi/libc.ts";

const SO_PASSCRED = 16;
const SCM_CREDENTIALS = 2;
const TIMEOUT_MS = 20_000;

/** One notification: who sent it and what. */
interface Notification {
  pid: number;
  text: string;
}

/** Receives one datagram and its sender's pid, or `null` if none is queued. */
function receive(fd: number): Notification | null {
  const data = new Uint8Array(4096);
  const control = new Uint8Array(64);
  const iov = new Uint8Array(IOVEC.size);
  const iovView = new DataView(iov.buffer);
  iovView.setBigUint64(IOVEC.base, backend().addressOf(data), true);
  iovView.setBigUint64(IOVEC.len, BigInt(data.length), true);
  const msg = new Uint8Array(MSGHDR.size);
  const msgView = new DataView(msg.buffer);
  msgView.setBigUint64(MSGHDR.iov, backend().addressOf(iov), true);
  msgView.setBigUint64(MSGHDR.iovlen, 1n, true);
  msgView.setBigUint64(MSGHDR.control, backend().addressOf(control), true);
  msgView.setBigUint64(MSGHDR.controllen, BigInt(control.length), true);
  const n = backend().fn.recvmsg(fd, msg, MSG_DONTWAIT);
  if (n < 0) return null;
  const cmsg = new DataView(control.buffer);
  assertEquals(cmsg.getInt32(12, true), SCM_CREDENTIALS, "credentials");
  return {
    pid: cmsg.getInt32(16, true),
    text: new TextDecoder().decode(data.subarray(0, n)),
  };
}

/** The notification socket: collects everything sent to it. */
function listenForNotifications(address: SocketAddress) {
  const fd = bindDatagram(address);
  setNonBlocking(fd, true);
  setIntOption(fd, SO_PASSCRED, 1);
  const received: Notification[] = [];
  const timer = setInterval(() => {
    for (let n = receive(fd); n; n = receive(fd)) received.push(n);
  }, 10);
  return {
    received,
    close() {
      clearInterval(timer);
      close(fd);
    },
  };
}

for (const kind of ["path", "abstract"] as const) {
  test(
    `notify (${runtime}): the messages of a self-upgrade, an external takeover and a stop, over a ${kind} socket`,
    async () => {
      const tmp = mkdtempSync("/tmp/tr-");
      const name = join(tmp, "notify");
      const address: SocketAddress = kind === "path"
        ? { family: "unix", path: name }
        : { family: "unix", abstract: name };
      const socket = listenForNotifications(address);
      const group = new ProcessGroup();
      const env = { NOTIFY_SOCKET: kind === "path" ? name : `@${name}` };
      const flags = [
        "--dir",
        join(tmp, "dir"),
        "--addr",
        `127.0.0.1:${await freePort()}`,
        "--upgrade-on-sighup",
      ];
      const start = () =>
        group.spawn(...commandLine(runtime, "examples/hello.ts", flags), env);
      const pids: number[] = [];
      const readyLines = (child: ReturnType<typeof start>) =>
        [...child.output.matchAll(/^READY (\d+)$/gm)].map((m) => Number(m[1]));
      try {
        const first = start();
        const a = await until(() => readyLines(first)[0], "A ready");
        pids.push(a);
        process.kill(a, "SIGHUP");
        const b = await until(() => readyLines(first)[1], "B ready");
        pids.push(b);
        await first.waitForLine(new RegExp(`^DRAINED ${a}$`), TIMEOUT_MS);
        const second = start();
        const c = await until(() => readyLines(second)[0], "C ready");
        pids.push(c);
        await until(
          () => first.output.includes(`DRAINED ${b}\n`),
          "B drained",
        );
        process.kill(c, "SIGTERM");
        await second.exited;
        // B exits a moment after DRAINED: give a stray message time to come.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const got = socket.received.map(({ pid, text }) => ({
          pid,
          text: text.replace(/MONOTONIC_USEC=\d+/, "MONOTONIC_USEC=<now>"),
        }));
        assertEquals(got, [
          { pid: a, text: `MAINPID=${a}\nREADY=1\nSTATUS=Serving (pid ${a})` },
          {
            pid: a,
            text:
              `RELOADING=1\nMONOTONIC_USEC=<now>\nSTATUS=Upgrading: started pid ${b} to take over`,
          },
          { pid: a, text: `STATUS=Handing over to pid ${b}` },
          { pid: b, text: `MAINPID=${b}` },
          { pid: b, text: `MAINPID=${b}\nREADY=1\nSTATUS=Serving (pid ${b})` },
          { pid: b, text: `STATUS=Handing over to pid ${c}` },
          { pid: c, text: `MAINPID=${c}` },
          { pid: c, text: `MAINPID=${c}\nREADY=1\nSTATUS=Serving (pid ${c})` },
          { pid: c, text: "STOPPING=1\nSTATUS=Stopping" },
        ]);
        const usec = Number(
          /MONOTONIC_USEC=(\d+)/.exec(socket.received[1].text)![1],
        );
        assert(usec > 0, "MONOTONIC_USEC is the monotonic clock");
      } finally {
        for (const pid of pids) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            // gone
          }
        }
        await group.close();
        socket.close();
        rmSync(tmp, { recursive: true, force: true });
      }
    },
    { timeout: 60_000 },
  );
}

test("notify (deno): a copy without --allow-env notifies too", async () => {
  const tmp = mkdtempSync("/tmp/tr-");
  const path = join(tmp, "notify");
  const socket = listenForNotifications({ family: "unix", path });
  const group = new ProcessGroup();
  try {
    const child = group.spawn(runtimeBinary("deno"), [
      "run",
      "--allow-ffi",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      `${ROOT}examples/hello.ts`,
      "--dir",
      join(tmp, "dir"),
      "--addr",
      `127.0.0.1:${await freePort()}`,
    ], { NOTIFY_SOCKET: path });
    await child.waitForLine(/^READY \d+$/, TIMEOUT_MS);
    child.kill("SIGTERM");
    assertEquals((await child.exited).code, 0);
    await until(() => socket.received.length >= 2, "two notifications");
    assertEquals(socket.received.map((n) => n.text), [
      `MAINPID=${child.pid}\nREADY=1\nSTATUS=Serving (pid ${child.pid})`,
      "STOPPING=1\nSTATUS=Stopping",
    ]);
  } finally {
    await group.close();
    socket.close();
    rmSync(tmp, { recursive: true, force: true });
  }
}, { skip: onlyUnder("deno", "--allow-env is a Deno permission") });

test(
  `notify (${runtime}): a successor the owner gave up on gives the main pid back`,
  async () => {
    const tmp = mkdtempSync("/tmp/tr-");
    const path = join(tmp, "notify");
    const socket = listenForNotifications({ family: "unix", path });
    const group = new ProcessGroup();
    const dir = join(tmp, "c");
    mkdirSync(dir, { mode: 0o700 });
    const withSocket = ["env", `NOTIFY_SOCKET=${path}`];
    const args = ["--dir", dir, "--fd", "web=tcp:127.0.0.1:0"];
    try {
      const owner = new Peer(
        group,
        runtime,
        [...args, "--upgrade-timeout", "300"],
        withSocket,
      );
      await owner.event("ready");
      const late = new Peer(
        group,
        runtime,
        [...args, "--ready", "1500"],
        withSocket,
      );
      await late.event("failed");
      owner.child.kill("SIGTERM");
      await owner.gone();
      const [a, l] = [owner.pid, late.pid];
      await until(
        () => socket.received.some((n) => n.text.startsWith("STOPPING=1")),
        "STOPPING=1",
      );
      const from = (pid: number) =>
        socket.received.filter((n) => n.pid === pid).map((n) => n.text);
      // The successor claims the main pid, then gives it back.
      assertEquals(from(l), [`MAINPID=${l}`, `MAINPID=${a}`]);
      // One handover: the successor judges whether the owner is alive by its
      // process, never by connecting again. Order between the two processes
      // is not fixed, so each is checked on its own.
      assertEquals(from(a), [
        `MAINPID=${a}\nREADY=1\nSTATUS=Serving (pid ${a})`,
        `STATUS=Handing over to pid ${l}`,
        `STATUS=Handover to pid ${l} failed; serving (pid ${a})`,
        "STOPPING=1\nSTATUS=Stopping",
      ]);
    } finally {
      await group.close();
      socket.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  },
  { timeout: 60_000 },
);
