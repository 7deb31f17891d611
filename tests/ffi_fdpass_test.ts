import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals, assertThrows } from "./support/assert.ts";
import {
  accept,
  close,
  connect,
  fdTarget,
  fileIdentity,
  formatAddress,
  listenOn,
  listFds,
  localAddress,
  MAX_FDS_PER_MESSAGE,
  memfd,
  openSocket,
  read,
  receiveWithFds,
  sendWithFds,
  socketPair,
  TruncatedMessageError,
  waitReadable,
  writeAll,
} from "../ffi/mod.ts";
import { Child, RUNTIMES } from "./fixtures/ffi_child.ts";
import {
  CONTENTS,
  describeSamples,
  KINDS,
  openSamples,
  type SentDescriptor,
} from "./fixtures/ffi_sent.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads `sock` to end of stream, collecting data and descriptors. */
async function receiveAll(
  sock: number,
): Promise<{ text: string; fds: number[] }> {
  let text = "";
  const fds: number[] = [];
  for (;;) {
    await waitReadable(sock);
    const message = receiveWithFds(sock, 65536, 16)!;
    if (message.data.length === 0) return { text, fds };
    text += decoder.decode(message.data);
    fds.push(...message.fds);
  }
}

/** Connects a new client to the listener `fd`, accepts it and checks both ends talk. */
function acceptOneConnection(listener: number): void {
  const addr = localAddress(listener);
  const client = openSocket(addr.family, "stream");
  try {
    connect(client, addr);
    const server = accept(listener)!;
    try {
      writeAll(server, encoder.encode("hello"));
      assertEquals(decoder.decode(read(client, 16)!), "hello");
    } finally {
      close(server);
    }
  } finally {
    close(client);
  }
}

async function receiveOneDatagram(udp: number): Promise<void> {
  const client = openSocket("inet", "dgram");
  try {
    connect(client, localAddress(udp));
    writeAll(client, encoder.encode("datagram"));
    await waitReadable(udp);
    assertEquals(decoder.decode(read(udp, 64)!), "datagram");
  } finally {
    close(client);
  }
}

/** Checks that `fds` are the objects `text` describes, and uses each one. */
async function checkSamples(text: string, fds: number[]): Promise<void> {
  const sent: SentDescriptor[] = JSON.parse(text);
  assertEquals(sent.map((d) => d.name), [...KINDS]);
  assertEquals(fds.length, sent.length);
  for (const [i, description] of sent.entries()) {
    const { dev, ino } = fileIdentity(fds[i]);
    assertEquals(
      [String(dev), String(ino)],
      [description.dev, description.ino],
      `${description.name} is the sender's object`,
    );
    if (description.address) {
      assertEquals(formatAddress(localAddress(fds[i])), description.address);
    }
  }
  const [tcp, unix, udp, file, pipeEnd, mem] = fds;
  acceptOneConnection(tcp);
  acceptOneConnection(unix);
  await receiveOneDatagram(udp);
  assertEquals(decoder.decode(read(file, 256)!), CONTENTS.file);
  assertEquals(decoder.decode(read(mem, 256)!), CONTENTS.memfd);
  assertEquals(decoder.decode(read(pipeEnd, 256)!), CONTENTS.pipe);
  assertEquals(read(pipeEnd, 256)!.length, 0, "pipe at EOF");
}

/** Runs `fn` with a listening control socket in a new temporary directory. */
async function withControl(
  fn: (control: number, path: string, dir: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tableroll-ffi-"));
  const path = join(dir, "control.sock");
  const control = listenOn({ family: "unix", path });
  try {
    await fn(control, path, dir);
  } finally {
    close(control);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Accepts `child`'s connection to `control`; fails if the child fails first. */
async function acceptChild(control: number, child: Child): Promise<number> {
  const failed = child.exited.then(({ code }) => {
    if (code !== 0) throw new Error(`the child exited with ${code}`);
  });
  await Promise.race([waitReadable(control), failed]);
  return accept(control)!;
}

for (const sender of RUNTIMES) {
  test(`ffi: a ${sender} process hands six kinds of descriptor to ${runtime}`, async () => {
    await withControl(async (control, path, dir) => {
      const child = new Child(sender, "ffi_sender.ts", [path, dir]);
      let received: number[] = [];
      try {
        const conn = await acceptChild(control, child);
        const { text, fds } = await receiveAll(conn);
        close(conn);
        received = fds;
        assertEquals((await child.exited).code, 0);
        await checkSamples(text, fds);
      } finally {
        await child.kill("SIGKILL");
        received.forEach(close);
      }
    });
  });
}

for (const relay of RUNTIMES) {
  test(`ffi: six kinds of descriptor go from ${runtime} to a ${relay} process and back`, async () => {
    await withControl(async (control, path, dir) => {
      const child = new Child(relay, "ffi_relay.ts", [path]);
      const samples = openSamples(dir);
      let returned: number[] = [];
      try {
        const conn = await acceptChild(control, child);
        const text = JSON.stringify(describeSamples(samples));
        sendWithFds(conn, encoder.encode(text), samples);
        // From here on only the copies that come back refer to them.
        samples.splice(0).forEach(close);
        const back = await receiveAll(conn);
        close(conn);
        returned = back.fds;
        assertEquals(back.text, text);
        assertEquals((await child.exited).code, 0);
        await checkSamples(back.text, back.fds);
      } finally {
        await child.kill("SIGKILL");
        [...samples, ...returned].forEach(close);
      }
    });
  });
}

/** `count` memfds, each a distinct file named `<prefix>-<i>`. */
function openMemfds(prefix: string, count: number): number[] {
  return Array.from({ length: count }, (_, i) => memfd(`${prefix}-${i}`));
}

function inode(fd: number): bigint {
  return fileIdentity(fd).ino;
}

test("ffi: more than 253 descriptors in one message is refused clearly", () => {
  const [a, b] = socketPair();
  const fds = openMemfds("limit", MAX_FDS_PER_MESSAGE + 1);
  try {
    const err = assertThrows(
      () => sendWithFds(a, new Uint8Array([1]), fds),
      RangeError,
      "at most 253 descriptors",
    );
    assert(err.message.includes("254"), err.message);
    // Nothing was sent.
    assertEquals(receiveWithFds(b, 16, 16, { dontWait: true }), null);
    // 253 is the kernel's limit and still goes through.
    sendWithFds(a, new Uint8Array([1]), fds.slice(0, MAX_FDS_PER_MESSAGE));
    const message = receiveWithFds(b, 16, MAX_FDS_PER_MESSAGE)!;
    assertEquals(message.fds.length, MAX_FDS_PER_MESSAGE);
    message.fds.forEach(close);
  } finally {
    [a, b, ...fds].forEach(close);
  }
});

test("ffi: 600 descriptors in three messages arrive complete and in order", () => {
  const [a, b] = socketPair();
  const fds = openMemfds("six-hundred", 600);
  const received: number[] = [];
  try {
    for (let i = 0; i < fds.length; i += MAX_FDS_PER_MESSAGE) {
      const chunk = fds.slice(i, i + MAX_FDS_PER_MESSAGE);
      sendWithFds(a, encoder.encode(String(chunk.length).padStart(4)), chunk);
    }
    while (received.length < fds.length) {
      const message = receiveWithFds(b, 4, MAX_FDS_PER_MESSAGE)!;
      assertEquals(Number(decoder.decode(message.data)), message.fds.length);
      received.push(...message.fds);
    }
    // A message without descriptors in between carries none.
    sendWithFds(a, encoder.encode("none"), []);
    assertEquals(receiveWithFds(b, 4, MAX_FDS_PER_MESSAGE)!.fds, []);
    assertEquals(received.length, 600);
    assertEquals(received.map(inode), fds.map(inode));
    assertEquals(new Set(received).size, 600, "600 distinct descriptors");
  } finally {
    [a, b, ...fds, ...received].forEach(close);
  }
});

/** Descriptors of this process that refer to one of `targets` (`socket:[…]`, …). */
function openRefsTo(targets: Set<string>): number[] {
  return listFds().filter((fd) => {
    try {
      return targets.has(fdTarget(fd));
    } catch {
      return false; // closed meanwhile by a concurrent test
    }
  });
}

test("ffi: MSG_CTRUNC throws TruncatedMessageError and leaks no descriptor", () => {
  const [a, b] = socketPair();
  const fds = openMemfds("ctrunc", 5);
  try {
    const targets = new Set(fds.map(fdTarget));
    const before = openRefsTo(targets);
    // listFds() is ascending; a concurrent test may free a lower number
    // while the memfds are opened, so they need not be.
    assertEquals(before, [...fds].sort((x, y) => x - y));
    sendWithFds(a, new Uint8Array([1]), fds);
    assertThrows(
      () => receiveWithFds(b, 16, 2),
      TruncatedMessageError,
      "room for 2",
    );
    // Ours are only compared by target: other test files run in parallel.
    assertEquals(openRefsTo(targets), before);
    // The next message arrives whole.
    sendWithFds(a, new Uint8Array([2]), fds.slice(0, 2));
    const next = receiveWithFds(b, 16, 2)!;
    assertEquals([Array.from(next.data), next.fds.length], [[2], 2]);
    next.fds.forEach(close);
  } finally {
    [a, b, ...fds].forEach(close);
  }
});

test("ffi: 1,000 send/receive rounds leave the descriptor table as it was", async () => {
  // A process of its own, so no other test opens descriptors meanwhile.
  const child = new Child(runtime, "ffi_rounds.ts", ["1000"]);
  try {
    const report = JSON.parse(await child.nextLine());
    assertEquals(report.rounds, 1000);
    assertEquals(report.received, 1000 * 3);
    assert(report.before.length > 0);
    assertEquals(report.after, report.before);
    assertEquals((await child.exited).code, 0);
  } finally {
    await child.kill("SIGKILL");
  }
});
