/**
 * The Upgrader against raw peers in the same process: the bytes it puts on
 * the wire as an owner and as a successor, its state machine, and what it
 * does with bad input. Process-level behaviour is in upgrader_process_test.ts.
 */
import { scaled, test } from "./support/harness.ts";
import {
  assert,
  assertEquals,
  AssertionError,
  assertRejects,
  assertThrows,
} from "./support/assert.ts";
import {
  chownSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import process from "node:process";
import {
  accept,
  close,
  connect,
  fileIdentity,
  flock,
  type InetAddress,
  listenOn,
  listFds,
  localAddress,
  O_RDWR,
  openFile,
  openSocket,
  sendWithFds,
  socketInfo,
  unlink,
  waitReadable,
} from "../ffi/mod.ts";
import { Upgrader } from "../mod.ts";
import { ControlConn } from "../src/control_conn.ts";
import { withDir } from "./fixtures/places.ts";
import { takenOver } from "./support/takeover.ts";
import { until, within } from "./support/until.ts";
import { encodeReady, encodeSteppingDown, frame } from "../src/protocol.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (...parts: (string | number[] | Uint8Array)[]) =>
  new Uint8Array(
    parts.flatMap((p) =>
      typeof p === "string" ? [...encoder.encode(p)] : [...p]
    ),
  );

/** A control connection that holds the lock on `<dir>/pid` until it is closed. */
class LockedConn extends ControlConn {
  #lockFd: number;

  constructor(fd: number, lockFd: number) {
    super(fd);
    this.#lockFd = lockFd;
  }

  override close(): void {
    super.close();
    this.unlock();
  }

  /** Closes the connection, keeping the lock. */
  hangUp(): void {
    super.close();
  }

  /** Releases the lock (once), keeping the connection if still open. */
  unlock(): void {
    if (this.#lockFd < 0) return;
    close(this.#lockFd);
    this.#lockFd = -1;
  }
}

/** A descriptor holding the lock on `<dir>/pid`, or `undefined` if it is held elsewhere right now. */
function tryLock(dir: string): number | undefined {
  const fd = openFile(`${dir}/pid`, O_RDWR);
  if (flock(fd, "exclusive", { nonblocking: true })) return fd;
  close(fd);
  return undefined;
}

/**
 * Takes the lock on `<dir>/pid`, waiting up to a second as a successor
 * would: the lock an owner released a moment ago can still be held by a
 * child that another test module of this process (they run on threads) is
 * starting, until it execs.
 */
function takeLock(dir: string): Promise<number> {
  return until(() => tryLock(dir), "the lock on pid", scaled(1_000));
}

/**
 * Connects to `<dir>/<id>.sock` the way a successor does: holding the lock
 * on `<dir>/pid`, unless `locked` is false.
 */
async function dialOwner(
  dir: string,
  id: string,
  locked = true,
): Promise<ControlConn> {
  const lockFd = locked ? await takeLock(dir) : -1;
  const fd = openSocket("unix", "stream");
  connect(fd, { family: "unix", path: `${dir}/${id}.sock` });
  return locked ? new LockedConn(fd, lockFd) : new ControlConn(fd);
}

/** Plays a Go owner: records `id` in the pid file and accepts one successor on `<dir>/<id>.sock`. */
function goOwner(
  dir: string,
  id: string,
): { successor: Promise<{ conn: ControlConn; fd: number }>; close(): void } {
  writeFileSync(`${dir}/pid`, id);
  const path = `${dir}/${id}.sock`;
  const fd = listenOn({ family: "unix", path }, { nonblocking: true });
  return {
    successor: waitReadable(fd).then(() => {
      const conn = accept(fd)!;
      return { conn: new ControlConn(conn), fd: conn };
    }),
    close() {
      close(fd);
      unlink(path);
    },
  };
}

/** Whether the lock on `<dir>/pid` is free right now. */
function lockIsFree(dir: string): boolean {
  const fd = tryLock(dir);
  if (fd === undefined) return false;
  close(fd);
  return true;
}

/** Whether the lock on `<dir>/pid` is free, or frees within a second (see {@link takeLock}). */
function lockFreed(dir: string): Promise<boolean> {
  return takeLock(dir).then((fd) => {
    close(fd);
    return true;
  }, (err) => {
    if (err instanceof AssertionError) return false; // still held
    throw err;
  });
}

/** An upgrader's state, the owner `<dir>/pid` records, and whether the lock is (or gets) free. */
async function standing(
  upgrader: Upgrader,
  dir: string,
): Promise<[string, string, boolean]> {
  const owner = readFileSync(`${dir}/pid`, "utf8");
  return [upgrader.state, owner, await lockFreed(dir)];
}

/** An owner `"old"` of one TCP listener `"web"`, ready. */
async function webOwner(dir: string, upgradeTimeout?: number) {
  const owner = await Upgrader.create(dir, { id: "old", upgradeTimeout });
  const web = owner.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
  await owner.ready();
  return { owner, web };
}

/** Dials the owner `"old"` and receives its metadata and one descriptor. */
async function receiveWeb(dir: string) {
  const peer = await dialOwner(dir, "old");
  const metadata = await peer.readBlob();
  const { data, fds } = await peer.readFdMessage(4096, 1);
  return { peer, metadata, data, fds };
}

const tcpListener = () =>
  listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 }, {
    nonblocking: true,
  });

test("upgrader: as owner it sends the Go bytes, one descriptor per message, and steps down", async () => {
  await withDir(async (dir) => {
    const { owner, web } = await webOwner(dir);
    assertEquals([owner.state, readFileSync(`${dir}/pid`, "utf8")], [
      "owner",
      "old",
    ]);

    const { peer, metadata, data, fds } = await receiveWeb(dir);
    const port = (web.address as InetAddress).port;
    const json =
      `[{"kind":"listener","id":"web","network":"tcp","addr":"127.0.0.1:${port}"}]\n`;
    assertEquals(metadata, bytes([0x09, 0x20], json));
    assertEquals(decoder.decode(data), `listener(web): tcp:127.0.0.1:${port}`);
    assertEquals(fileIdentity(fds[0]).ino, fileIdentity(web.fd).ino);

    assertEquals(owner.state, "handing-over");
    assertThrows(
      () => owner.fds.listen("api", { port: 0 }),
      "upgrade-in-progress",
    );

    await peer.writeAll(encodeReady());
    assertEquals(await peer.readExact(28), encodeSteppingDown());
    // Complete only once the successor has recorded itself as owner.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assertEquals(owner.state, "handing-over");
    writeFileSync(`${dir}/pid`, "new");
    peer.close(); // releases the lock
    await takenOver(owner);
    assertEquals(owner.state, "upgraded");
    assertThrows(() => owner.fds.remove("web"), "upgrade-completed");

    await owner.stop();
    assertThrows(() => owner.fds.listen("web", { port: 0 }), "stopped");
    close(fds[0]);
  });
});

test("upgrader: a Go successor's order (hang up, record, unlock) completes the handover", async () => {
  await withDir(async (dir) => {
    const { owner } = await webOwner(dir);
    const { peer, fds } = await receiveWeb(dir);
    await peer.writeAll(encodeReady());
    assertEquals(await peer.readExact(28), encodeSteppingDown());
    // Go's readyHandshake closes the connection before BecomeOwner writes
    // the record; the lock is released last.
    (peer as LockedConn).hangUp();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assertEquals(owner.state, "handing-over", "not settled by the hang-up");
    writeFileSync(`${dir}/pid`, "go");
    (peer as LockedConn).unlock();
    await takenOver(owner);
    assertEquals(await standing(owner, dir), ["upgraded", "go", true]);
    await owner.stop();
    fds.forEach(close);
  });
});

test("upgrader: as successor it takes over from a Go v2.0.0 owner byte for byte", async () => {
  await withDir(async (dir) => {
    const go = goOwner(dir, "go");
    const listener = tcpListener();
    const journal = openFile(`${dir}/journal`, O_RDWR | 0o100);
    const served = (async () => {
      const { conn } = await go.successor;
      const json =
        '[{"kind":"listener","id":"web","network":"tcp","addr":"x"},' +
        '{"kind":"file","id":"journal","network":"","addr":""}]\n';
      await conn.writeAll(frame(bytes([0x09, 0x20], json)));
      await conn.sendFd(encoder.encode("listener(web): tcp:x"), listener);
      await conn.sendFd(encoder.encode("journal"), journal);
      assertEquals(await conn.readExact(19), encodeReady());
      await conn.writeAll(encodeSteppingDown());
      conn.close();
    })();
    const upgrader = await Upgrader.create(dir, { id: "ts" });
    const web = upgrader.fds.listen("web", { hostname: "127.0.0.1", port: 0 });
    assertEquals([web.inherited, fileIdentity(web.fd).ino], [
      true,
      fileIdentity(listener).ino,
    ]);
    assertEquals(
      fileIdentity(upgrader.fds.openFile("journal", "/nonexistent").fd).ino,
      fileIdentity(journal).ino,
    );
    assertEquals(upgrader.state, "starting");
    assert(!lockIsFree(dir), "the successor holds the lock until ready()");
    await upgrader.ready();
    await served;
    assertEquals(await standing(upgrader, dir), ["owner", "ts", true]);
    await upgrader.stop();
    go.close();
    close(listener);
    close(journal);
  });
});

test("upgrader: several descriptors in one message, and a version-0 owner, are understood", async () => {
  await withDir(async (dir) => {
    const go = goOwner(dir, "v0");
    const [a, b] = [tcpListener(), tcpListener()];
    const served = (async () => {
      const { conn, fd } = await go.successor;
      await conn.writeAll(
        frame(
          bytes(
            '[{"kind":"listener","id":"a"},{"kind":"listener","id":"b"}]\n',
          ),
        ),
      );
      sendWithFds(fd, encoder.encode("a and b"), [a, b]);
      assertEquals(await conn.readExact(1), new Uint8Array([0x2a]));
      conn.close();
    })();
    const upgrader = await Upgrader.create(dir, { id: "ts" });
    assertEquals(
      upgrader.fds.list().map((d) => fileIdentity(d.fd).ino),
      [a, b].map((fd) => fileIdentity(fd).ino),
    );
    upgrader.fds.claim("a");
    upgrader.fds.claim("b");
    await upgrader.ready();
    await served;
    await upgrader.stop();
    go.close();
    [a, b].forEach(close);
  });
});

test("upgrader: a successor whose ready() fails releases the lock at once and stops", async () => {
  await withDir(async (dir) => {
    const go = goOwner(dir, "go");
    const served = (async () => {
      const { conn } = await go.successor;
      await conn.writeAll(frame(bytes([0x09, 0x20], "[]\n")));
      await conn.readExact(19);
      await conn.writeAll(frame(bytes('{"msg":"not today"}\n')));
      conn.close();
    })();
    const upgrader = await Upgrader.create(dir, { id: "ts" });
    await assertRejects(upgrader.ready(), "protocol", "stepping down");
    await served;
    assertEquals(await standing(upgrader, dir), ["stopped", "go", true]);
    go.close();
  });
});

test("upgrader: the owner's upgrade timeout interrupts a successor that never gets ready", async () => {
  await withDir(async (dir) => {
    const { owner } = await webOwner(dir, scaled(300));
    const { peer, fds } = await receiveWeb(dir);
    const started = performance.now();
    await assertRejects(peer.readExact(1), "peer-closed");
    assert(
      performance.now() - started < scaled(5000),
      "the owner dropped the successor within its timeout",
    );
    assertEquals(owner.state, "owner");
    peer.close();
    fds.forEach(close);

    const successor = await Upgrader.create(dir, { id: "new" });
    successor.fds.claim("web");
    await successor.ready();
    await takenOver(owner);
    assertEquals([owner.state, successor.state], ["upgraded", "owner"]);
    await Promise.all([owner.stop(), successor.stop()]);
  });
});

test("upgrader: garbage and a wrong version leave the owner serving, with no descriptor leaked", async () => {
  await withDir(async (dir) => {
    const { owner } = await webOwner(dir, 2000);
    const sock = `${dir}/old.sock`;
    const replies = [
      new Uint8Array([0x00]),
      bytes([0x42], frame(bytes('{"version":2}\n'))),
      bytes([0x42, 0x7f, 0xff, 0xff, 0xff]),
      bytes([0x42], frame(bytes("not json"))),
    ];
    for (const reply of replies) {
      const { peer, fds } = await receiveWeb(dir);
      await peer.writeAll(reply);
      await assertRejects(peer.readExact(1), "peer-closed");
      assertEquals(owner.state, "owner", `after ${reply.slice(0, 8)}`);
      peer.close();
      fds.forEach(close);
    }
    await waitFor(() => controlConnections(sock).length === 0);
    assertEquals(controlConnections(sock), []);
    owner.fds.listen("api", { hostname: "127.0.0.1", port: 0 });
    await owner.stop();
  });
});

test("upgrader: a ready message that claims a long body is refused at once, not waited for", async () => {
  await withDir(async (dir) => {
    const { owner } = await webOwner(dir, 60_000);
    const { peer, fds } = await receiveWeb(dir);
    // The ready blob is one short line of JSON; 64 MiB would be a metadata
    // blob's limit, which an owner must neither allocate nor wait for here.
    await peer.writeAll(bytes([0x42, 0x04, 0x00, 0x00, 0x00]));
    await within(
      assertRejects(peer.readExact(1), "peer-closed"),
      scaled(2_000),
      "the owner still waits for the claimed body",
    );
    assertEquals(owner.state, "owner");
    peer.close();
    fds.forEach(close);
    await owner.stop();
  });
});

test("upgrader: a client that does not hold the lock gets nothing and cannot make the owner step down", async () => {
  await withDir(async (dir) => {
    const { owner } = await webOwner(dir);
    const sock = `${dir}/old.sock`;
    const intruder = await dialOwner(dir, "old", false);
    await intruder.writeAll(new Uint8Array([0x2a])); // the legacy ready byte
    await assertRejects(intruder.readBlob(), "peer-closed");
    intruder.close();
    assertEquals(owner.state, "owner");
    await waitFor(() => controlConnections(sock).length === 0);
    assertEquals(controlConnections(sock), []);
    const successor = await Upgrader.create(dir, { id: "new" });
    successor.fds.claim("web");
    await successor.ready();
    await takenOver(owner);
    await Promise.all([owner.stop(), successor.stop()]);
  });
});

test("upgrader: a successor that leaves after 'stepping down' without recording itself leaves the owner in charge", async () => {
  await withDir(async (dir) => {
    const { owner, web } = await webOwner(dir);
    const { peer, fds } = await receiveWeb(dir);
    await peer.writeAll(encodeReady());
    assertEquals(await peer.readExact(28), encodeSteppingDown());
    peer.close(); // releases the lock; <dir>/pid still names "old"
    fds.forEach(close);
    await waitFor(() => owner.state === "owner");
    assertEquals(await standing(owner, dir), ["owner", "old", true]);
    // It serves and hands over as before.
    assertEquals(owner.fds.get("web")?.fd, web.fd);
    const successor = await Upgrader.create(dir, { id: "new" });
    successor.fds.claim("web");
    await successor.ready();
    await takenOver(owner);
    assertEquals(await standing(successor, dir), ["owner", "new", true]);
    await Promise.all([owner.stop(), successor.stop()]);
  });
});

test("upgrader: a connection while a handover is under way is closed at once", async () => {
  await withDir(async (dir) => {
    const owner = await Upgrader.create(dir, { id: "old" });
    await owner.ready();
    const first = await dialOwner(dir, "old");
    await first.readBlob();
    const second = await dialOwner(dir, "old", false);
    await assertRejects(second.readExact(1), "peer-closed");
    await owner.stop();
    await assertRejects(first.readExact(1), "peer-closed");
    first.close();
    second.close();
  });
});

/** How many descriptors of this process refer to the file behind `fd`. */
function openCopies(fd: number): number {
  const { dev, ino } = fileIdentity(fd);
  return listFds().filter((other) => {
    try {
      const id = fileIdentity(other);
      return id.dev === dev && id.ino === ino;
    } catch {
      return false; // closed meanwhile
    }
  }).length;
}

/** A logger that keeps its warnings. */
function warningsLogger() {
  const warnings: string[] = [];
  const ignore = () => {};
  return {
    warnings,
    logger: {
      debug: ignore,
      info: ignore,
      warn: (message: string) => warnings.push(message),
      error: ignore,
    },
  };
}

test("upgrader: inherited descriptors nobody claimed are closed at ready(), with a warning; claimed ones never", async () => {
  await withDir(async (dir) => {
    const owner = await Upgrader.create(dir, { id: "old" });
    const a = owner.fds.listen("a", { hostname: "127.0.0.1", port: 0 });
    const b = owner.fds.listen("b", { hostname: "127.0.0.1", port: 0 });
    const c = owner.fds.listen("c", { hostname: "127.0.0.1", port: 0 });
    await owner.ready();
    const { warnings, logger } = warningsLogger();
    const successor = await Upgrader.create(dir, { id: "new", logger });
    assertEquals([a, b, c].map((l) => openCopies(l.fd)), [2, 2, 2]);
    const claimed = successor.fds.listen("a", {
      hostname: "127.0.0.1",
      port: (a.address as InetAddress).port,
    });
    assertEquals(successor.fds.claim("c")?.inherited, true);
    assertEquals(successor.fds.get("b")?.inherited, true, "get() only looks");
    await successor.ready();
    assertEquals(successor.fds.list().map((d) => d.name), ["a", "c"]);
    assertEquals(fileIdentity(claimed.fd).ino, fileIdentity(a.fd).ino);
    assertEquals([a, b, c].map((l) => openCopies(l.fd)), [2, 1, 2]);
    assertEquals(warnings.length, 1);
    assert(warnings[0].includes("b") && warnings[0].includes("before ready()"));
    await Promise.all([owner.stop(), successor.stop()]);
  });
});

test("upgrader: listening on an inherited name that ready() closed is a ClaimedTooLateError", async () => {
  await withDir(async (dir) => {
    const { owner, web } = await webOwner(dir);
    const successor = await Upgrader.create(dir, { id: "new" });
    await successor.ready();
    await takenOver(owner);
    const address = {
      hostname: "127.0.0.1",
      port: (web.address as InetAddress).port,
    };
    assertThrows(
      () => successor.fds.listen("web", address),
      "claimed-too-late",
      "before calling ready()",
    );
    assertThrows(() => successor.fds.claim("web"), "claimed-too-late");
    successor.fds.listen("api", { hostname: "127.0.0.1", port: 0 });
    await Promise.all([owner.stop(), successor.stop()]);
  });
});

test("upgrader: a Unix listener opens again at the same path after a clean stop", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/web.sock`;
    for (const id of ["first", "second"]) {
      const upgrader = await Upgrader.create(dir, { id });
      // Until a child that another test module of this process (they run
      // on threads) is starting execs, it holds a copy of every descriptor,
      // the listener closed a moment ago included: that listener is live.
      const web = await until(
        () => {
          try {
            return upgrader.fds.listen("web", { path });
          } catch (err) {
            if (String(err).includes("EADDRINUSE")) return undefined;
            throw err;
          }
        },
        `${id} listening on ${path}`,
        scaled(2_000),
      );
      assertEquals(web.inherited, false);
      await upgrader.ready();
      await upgrader.stop();
    }
    // A live listener on the path is never replaced.
    const live = listenOn({ family: "unix", path: `${dir}/live.sock` });
    const upgrader = await Upgrader.create(dir, { id: "third" });
    assertThrows(
      () => upgrader.fds.listen("live", { path: `${dir}/live.sock` }),
      Error,
      "EADDRINUSE",
    );
    writeFileSync(`${dir}/plain`, "not a socket");
    assertThrows(
      () => upgrader.fds.listen("plain", { path: `${dir}/plain` }),
      Error,
      "EADDRINUSE",
    );
    assertEquals(readFileSync(`${dir}/plain`, "utf8"), "not a socket");
    await upgrader.stop();
    close(live);
  });
});

test("upgrader: asking an inherited name for another address is a DescriptorMismatchError", async () => {
  await withDir(async (dir) => {
    const { owner, web } = await webOwner(dir);
    owner.fds.openFile("journal", `${dir}/journal`);
    const successor = await Upgrader.create(dir, { id: "new" });
    const port = (web.address as InetAddress).port;
    assertThrows(
      () =>
        successor.fds.listen("web", { hostname: "127.0.0.1", port: port + 1 }),
      "descriptor-mismatch",
    );
    assertThrows(
      () =>
        successor.fds.listen("web", { hostname: "127.0.0.1", port: port + 1 }),
      "descriptor-mismatch",
      `"web" is bound to 127.0.0.1:${port}, not to 127.0.0.1:${port + 1}`,
    );
    assertThrows(
      () => successor.fds.listen("web", { hostname: "::1", port }),
      "descriptor-mismatch",
    );
    assertThrows(
      () => successor.fds.listen("web", { path: `${dir}/web.sock` }),
      "descriptor-mismatch",
    );
    assertThrows(
      () => successor.fds.listen("journal", { port: 0 }),
      "descriptor-mismatch",
      "file",
    );
    assertEquals(
      successor.fds.listen("web", { hostname: "localhost", port }).inherited,
      true,
    );
    assertThrows(
      () => successor.fds.add("web", web.fd),
      "descriptor-mismatch",
      "already stored",
    );
    await Promise.all([successor.stop(), owner.stop()]);
  });
});

test("upgrader: a DescriptorMismatchError names the socket's real address, not the one the owner claimed", async () => {
  await withDir(async (dir) => {
    const go = goOwner(dir, "go");
    const listener = tcpListener();
    const real = `127.0.0.1:${(localAddress(listener) as InetAddress).port}`;
    const lying = go.successor.then(async ({ conn }) => {
      await conn.writeAll(frame(bytes(
        [0x09, 0x20],
        '[{"kind":"listener","id":"web","network":"tcp","addr":"127.0.0.1:1"}]\n',
      )));
      await conn.sendFd(encoder.encode("listener(web)"), listener);
      return conn;
    });
    const upgrader = await Upgrader.create(dir, { id: "ts" });
    assertThrows(
      () => upgrader.fds.listen("web", { hostname: "127.0.0.1", port: 1 }),
      "descriptor-mismatch",
      `"web" is bound to ${real} (the predecessor described it as tcp 127.0.0.1:1), not to 127.0.0.1:1 as asked`,
    );
    (await lying).close();
    await upgrader.stop();
    go.close();
    close(listener);
  });
});

test("upgrader: bad ids, missing directories and files are refused with typed errors", async () => {
  await withDir(async (dir) => {
    for (const id of ["", ".", "..", "a/b", "nul\0"]) {
      await assertRejects(Upgrader.create(dir, { id }), "bad-id");
    }
    await assertRejects(
      Upgrader.create(dir, { id: "x".repeat(120) }),
      "bad-id",
      "shorter",
    );
    await assertRejects(
      Upgrader.create(`${dir}/missing`),
      "bad-directory",
      "does not exist",
    );
    writeFileSync(`${dir}/file`, "");
    await assertRejects(Upgrader.create(`${dir}/file`), "bad-directory");
    rmSync(`${dir}/file`);
    assertEquals(
      readDirNames(dir),
      [],
      "nothing is left behind by refused creates",
    );
  });
});

test("upgrader: a directory of another user is refused with a typed error", async () => {
  if (process.getuid!() !== 0) {
    // Any user but root has one at hand: root's "/", which it cannot write.
    await assertRejects(
      Upgrader.create("/"),
      "bad-directory",
      "/ belongs to uid 0",
    );
    return;
  }
  // Root, who could write anywhere, is refused one it gave to nobody, and
  // writes nothing there.
  await withDir(async (dir) => {
    chownSync(dir, 65534, 65534);
    await assertRejects(
      Upgrader.create(dir),
      "bad-directory",
      `${dir} belongs to uid 65534`,
    );
    chownSync(dir, 0, 0);
    assertEquals(readDirNames(dir), [], "nothing is left behind");
  });
});

test("upgrader: a live id is refused, a stale socket of the same id is replaced", async () => {
  await withDir(async (dir) => {
    const first = await Upgrader.create(dir, { id: "svc" });
    await assertRejects(
      Upgrader.create(dir, { id: "svc" }),
      "id-in-use",
      "live process",
    );
    await first.ready();
    await first.stop();
    // A killed process leaves its socket file behind, bound but served by nobody.
    close(listenOn({ family: "unix", path: `${dir}/svc.sock` }));
    const second = await Upgrader.create(dir, { id: "svc" });
    await second.ready();
    assertEquals(second.state, "owner");
    await second.stop();
  });
});

test("upgrader: cancelling the create signal after create() does not break ready()", async () => {
  await withDir(async (dir) => {
    const { owner } = await webOwner(dir);
    const controller = new AbortController();
    const successor = await Upgrader.create(dir, {
      id: "new",
      signal: controller.signal,
    });
    controller.abort();
    successor.fds.claim("web");
    await successor.ready();
    assertEquals(await standing(successor, dir), ["owner", "new", true]);
    await takenOver(owner);
    assertEquals(owner.state, "upgraded");
    await Promise.all([owner.stop(), successor.stop()]);
  });
});

test("upgrader: the create signal bounds the wait for the lock; nothing is left behind", async () => {
  await withDir(async (dir) => {
    const holder = await Upgrader.create(dir, { id: "holder" });
    const controller = new AbortController();
    const waiting = Upgrader.create(dir, {
      id: "waiter",
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error("deploy cancelled")), 100);
    await assertRejects(waiting, Error, "deploy cancelled");
    assertEquals(readDirNames(dir), ["holder.sock", "pid"]);
    await holder.stop();
  });
});

/**
 * The descriptors of this process that are connections accepted on the
 * control socket `path` (their local address is its path). Counting every
 * descriptor would not do: other test files run in this process meanwhile.
 */
function controlConnections(path: string): number[] {
  return listFds().filter((fd) => {
    try {
      const info = socketInfo(fd);
      if (info.family !== "unix" || info.listening) return false;
      const local = localAddress(fd);
      return local.family === "unix" && "path" in local && local.path === path;
    } catch {
      return false; // not a socket, or closed meanwhile
    }
  });
}

function readDirNames(dir: string): string[] {
  return readdirSync(dir).sort();
}

async function waitFor(condition: () => boolean, ms = 2000): Promise<void> {
  for (const end = Date.now() + ms; !condition() && Date.now() < end;) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("upgrader: an owner that stalls mid-transfer fails create() after the upgrade timeout", async () => {
  await withDir(async (dir) => {
    const go = goOwner(dir, "go");
    const stalled = go.successor.then(async ({ conn }) => {
      await conn.writeAll(
        frame(bytes([0x09, 0x20], '[{"kind":"file","id":"never"}]\n')),
      );
      return conn;
    });
    await assertRejects(
      Upgrader.create(dir, { id: "ts", upgradeTimeout: 300 }),
      "timeout",
      "receiving",
    );
    assertEquals(await lockFreed(dir), true);
    (await stalled).close();
    go.close();
  });
});

test("upgrader: an owner that is alive but gave up makes ready() fail with what to do", async () => {
  await withDir(async (dir) => {
    const go = goOwner(dir, "go");
    const handedOver = go.successor.then(async ({ conn }) => {
      await conn.writeAll(frame(bytes([0x09, 0x20], "[]\n")));
      return conn;
    });
    const upgrader = await Upgrader.create(dir, { id: "ts" });
    (await handedOver).close(); // gave up, yet still listening
    await assertRejects(upgrader.ready(), "peer-closed", "stays the owner");
    assertEquals(await standing(upgrader, dir), ["stopped", "go", true]);
    go.close();
  });
});
