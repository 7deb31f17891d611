// Properties of both directions of the exchange: whatever a fake owner sends
// to a real `Upgrader.create`, and whatever a fake successor (holding the
// lock, as a real one does) sends to a real owner, ends in a typed error or
// a clean refusal, with descriptors and memory bounded, and the owner keeps
// serving and can still hand over for real.
import fc from "fast-check";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import {
  accept,
  close,
  connect,
  fileIdentity,
  listenOn,
  listFds,
  openSocket,
  pipe,
  receiveWithFds,
  sendWithFds,
  setNonBlocking,
  SHUT_WR,
  shutdown,
  socketPair,
  unlink,
  waitReadable,
  waitWritable,
  write,
} from "../ffi/mod.ts";
import { controlSocketPath, OwnerLock } from "../src/coordination.ts";
import {
  blobLength,
  decodeReadyVersion,
  describeDescriptor,
  type DescriptorMeta,
  encodeMetadata,
  encodeReady,
  frame,
  LEGACY_READY_BYTE,
  MAX_BLOB_BYTES,
  READY_BYTE,
} from "../src/protocol.ts";
import { TablerollError, Upgrader } from "../mod.ts";
import { ProcessGroup } from "../testing/processes.ts";
import { ask, Peer } from "./fixtures/upgrader_peers.ts";

/** Bounded: each run is one exchange of a few milliseconds. */
const RUNS = { numRuns: 60 };
/** An owner's RSS may grow this much over all the runs (one 64 MiB blob would exceed it). */
const RSS_SLACK_KIB = 32 * 1024;

const text = (s: string) => new TextEncoder().encode(s);

/** Runs `body` with a fresh coordination directory; removes it afterwards. */
async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  // Short: Unix socket paths must fit in 108 bytes.
  const tmp = mkdtempSync("/tmp/tr-");
  const dir = join(tmp, "c");
  mkdirSync(dir, { mode: 0o700 });
  try {
    await body(dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Resident set size of process `pid` in KiB. */
function rssKiB(pid: number | "self"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(status.match(/^VmRSS:\s+(\d+) kB$/m)![1]);
}

/** `dev:ino` of an open descriptor: equal for every copy of one file or socket. */
function identityOf(fd: number): string {
  const { dev, ino } = fileIdentity(fd);
  return `${dev}:${ino}`;
}

/**
 * Descriptors of this process that are a copy of something a fake owner sent
 * (the fake closes its own), or a Unix socket bound in `dir` (an upgrader's
 * control socket): after the runs, any such one leaked. Other test files run
 * in the same process under Deno, so a bare count would blame theirs.
 */
function leaked(sent: Set<string>, dir: string): number[] {
  const boundInDir = new Set(
    readFileSync("/proc/net/unix", "utf8").split("\n").flatMap((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[7]?.startsWith(`${dir}/`) ? [fields[6]] : [];
    }),
  );
  return listFds().filter((fd) => {
    let identity: string;
    try {
      identity = identityOf(fd);
    } catch {
      return false; // closed meanwhile by whoever owned it
    }
    return sent.has(identity) || boundInDir.has(identity.split(":")[1]);
  });
}

/** Writes all of `data` to non-blocking `fd`, the first byte carrying `fds`. */
async function send(fd: number, data: Uint8Array, fds: number[] = []) {
  for (let off = 0; off < data.length;) {
    const chunk = data.subarray(off);
    const n = off === 0 && fds.length > 0
      ? sendWithFds(fd, chunk, fds, { dontWait: true })
      : write(fd, chunk);
    if (n === null) {
      await waitWritable(fd, { signal: AbortSignal.timeout(10_000) });
    } else off += n;
  }
}

/** Reads from non-blocking `fd` until the peer hangs up, closing every descriptor that arrives. */
async function drain(fd: number): Promise<void> {
  const signal = AbortSignal.timeout(15_000);
  for (;;) {
    let message;
    try {
      message = receiveWithFds(fd, 65536, 253, { dontWait: true });
    } catch (err) {
      // A peer that closes with our bytes unread resets the connection.
      if ((err as { code?: string }).code === "ECONNRESET") return;
      throw err;
    }
    if (message === null) {
      await waitReadable(fd, { signal });
      continue;
    }
    message.fds.forEach(close);
    if (message.data.length === 0 && message.fds.length === 0) return;
  }
}

/** Sends bytes, ignoring a peer that already gave up (what a hostile peer would do). */
async function sendIgnoringHangUp(
  fd: number,
  data: Uint8Array,
  fds: number[] = [],
) {
  try {
    await send(fd, data, fds);
  } catch (err) {
    if (!["EPIPE", "ECONNRESET"].includes((err as { code?: string }).code!)) {
      throw err;
    }
  }
}

// ---------------------------------------------------------------------------
// A fake owner against a real Upgrader.create.

/** What a descriptor sent by the fake owner is. */
type FdKind = "pipe" | "tcp" | "pair";

/** Opens a descriptor of `kind`; returns it and the extra ends to close. */
function openKind(kind: FdKind): { fd: number; extra: number[] } {
  switch (kind) {
    case "pipe": {
      const [r, w] = pipe();
      return { fd: r, extra: [w] };
    }
    case "tcp":
      return {
        fd: listenOn({ family: "inet", hostname: "127.0.0.1", port: 0 }),
        extra: [],
      };
    case "pair": {
      const [a, b] = socketPair();
      return { fd: a, extra: [b] };
    }
  }
}

/** One message after the metadata: data bytes and descriptors attached to them. */
interface FdMessage {
  data: Uint8Array;
  fds: FdKind[];
}

/** What the fake owner does on one connection. */
interface OwnerScript {
  metadata: Uint8Array;
  /** Descriptors attached to the metadata's first byte (where none belong). */
  metadataFds: FdKind[];
  messages: FdMessage[];
  /** For a correct handover, which must be taken: the names it hands over. */
  names?: string[];
}

const fdKind = fc.constantFrom<FdKind>("pipe", "tcp", "pair");

const entry: fc.Arbitrary<DescriptorMeta> = fc.record({
  kind: fc.constantFrom("listener", "conn", "file"),
  id: fc.constantFrom("web", "api", "log", "x"),
  network: fc.constantFrom("", "tcp", "unix"),
  addr: fc.constantFrom("", "127.0.0.1:8080", "/run/s.sock"),
});

/** A correctly framed handover; correct only if no two entries share a name. */
const wellFramedOwner: fc.Arbitrary<OwnerScript> = fc.array(entry, {
  maxLength: 4,
}).chain((entries) =>
  fc.array(fdKind, { minLength: entries.length, maxLength: entries.length })
    .map((kinds) => {
      const names = entries.map((e) => e.id);
      return {
        metadata: encodeMetadata(entries),
        metadataFds: [],
        messages: entries.map((e, i) => ({
          data: text(describeDescriptor(e)),
          fds: [kinds[i]],
        })),
        names: new Set(names).size === names.length ? names : undefined,
      };
    })
);

/** A length prefix of any value, then a body that may be shorter or longer. */
const anyLengthBlob = fc.tuple(
  fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    fc.constantFrom(MAX_BLOB_BYTES, MAX_BLOB_BYTES + 1, -1, 0),
  ),
  fc.uint8Array({ maxLength: 256 }),
).map(([length, body]) => {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setInt32(0, length, false);
  out.set(body, 4);
  return out;
});

const metadataBytes = fc.oneof(
  // Valid metadata, possibly with duplicate names, possibly truncated.
  fc.tuple(fc.array(entry, { maxLength: 5 }), fc.option(fc.nat())).map((
    [entries, cut],
  ) => {
    const blob = encodeMetadata(entries);
    return cut === null ? blob : blob.subarray(0, cut % blob.length);
  }),
  // Any JSON or bytes in a correct frame.
  fc.oneof(
    fc.jsonValue().map((v) => text(JSON.stringify(v))),
    fc.uint8Array({ maxLength: 200 }),
  )
    .map(frame),
  anyLengthBlob,
);

const anyOwner: fc.Arbitrary<OwnerScript> = fc.record({
  metadata: metadataBytes,
  metadataFds: fc.array(fdKind, { maxLength: 2 }),
  messages: fc.array(
    fc.record({
      data: fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        fc.integer({ min: 4000, max: 9000 }).map((n) =>
          new Uint8Array(n).fill(0x61)
        ),
      ),
      fds: fc.array(fdKind, { maxLength: 3 }),
    }),
    { maxLength: 5 },
  ),
});

/** `dev:ino` of every descriptor a fake owner opened, to find copies left open. */
const sentIdentities = new Set<string>();

/**
 * Plays `script` as the owner of `dir` to a real `Upgrader.create`; returns
 * whether it was taken, after checking that a refusal is a TablerollError.
 */
async function playOwner(dir: string, script: OwnerScript): Promise<boolean> {
  const path = controlSocketPath(dir, "fake");
  const listener = listenOn({ family: "unix", path }, { nonblocking: true });
  writeFileSync(join(dir, "pid"), "fake");
  // Generous: the fake always hangs up, so no case waits for it, but the
  // first wait of a loaded machine may start the waiter thread slowly.
  const created = Upgrader.create(dir, { id: "next", upgradeTimeout: 30_000 })
    .then((upgrader) => ({ upgrader, error: undefined }))
    .catch((error: unknown) => ({ upgrader: undefined, error }));
  const opened: number[] = [];
  const open = (kind: FdKind) => {
    const { fd, extra } = openKind(kind);
    opened.push(fd, ...extra);
    for (const end of [fd, ...extra]) sentIdentities.add(identityOf(end));
    return fd;
  };
  try {
    await waitReadable(listener, { signal: AbortSignal.timeout(10_000) });
    const conn = accept(listener, { nonblocking: true })!;
    try {
      await sendIgnoringHangUp(
        conn,
        script.metadata,
        script.metadataFds.map(open),
      );
      for (const message of script.messages) {
        await sendIgnoringHangUp(conn, message.data, message.fds.map(open));
      }
    } finally {
      // Whatever was left unsaid, the owner hangs up.
      close(conn);
    }
    const { upgrader, error } = await created;
    if (upgrader) {
      if (script.names) {
        assertEquals(
          upgrader.fds.list().map((d) => d.name).sort(),
          [...script.names].sort(),
        );
      }
      await upgrader.stop();
      return true;
    }
    assert(
      error instanceof TablerollError,
      `Upgrader.create failed with ${String(error)}, not a TablerollError`,
    );
    assert(!script.names, `a correct handover was refused: ${error}`);
    return false;
  } finally {
    opened.forEach(close);
    close(listener);
    unlink(path);
  }
}

test(
  "props: a fake owner's well-formed handovers are taken, anything else is a TablerollError; no descriptor leaks",
  async () => {
    await withDir(async (dir) => {
      await playOwner(dir, fc.sample(wellFramedOwner, 1)[0]); // warm-up
      const rssBefore = rssKiB("self");
      let taken = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(wellFramedOwner, anyOwner),
          async (script) => {
            if (await playOwner(dir, script)) taken++;
          },
        ),
        RUNS,
      );
      assert(taken > 0, "no handover was taken: the property tested nothing");
      assertEquals(
        leaked(sentIdentities, dir),
        [],
        "descriptors leaked",
      );
      const grown = rssKiB("self") - rssBefore;
      assert(grown < RSS_SLACK_KIB, `RSS grew by ${grown} KiB`);
    });
  },
  { timeout: 120_000 },
);

// ---------------------------------------------------------------------------
// A fake successor against a real owner.

/** Whether `bytes` from a successor would complete a handover (not what is tested here). */
function completesHandover(bytes: Uint8Array): boolean {
  if (bytes[0] === LEGACY_READY_BYTE) return true;
  if (bytes[0] !== READY_BYTE || bytes.length < 5) return false;
  try {
    const length = blobLength(bytes.subarray(1, 5));
    return bytes.length >= 5 + length &&
      decodeReadyVersion(bytes.subarray(5, 5 + length)) === 1;
  } catch {
    return false;
  }
}

/** What the fake successor does on one connection. */
interface SuccessorScript {
  /** Read what the owner sent before answering (the metadata and descriptors). */
  readFirst: boolean;
  bytes: Uint8Array;
  /** Attach a descriptor to the first byte. */
  attachFd: boolean;
}

const readyWith = (body: Uint8Array) =>
  new Uint8Array([READY_BYTE, ...frame(body)]);

const successorBytes = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 64 }),
  fc.jsonValue().map((v) => readyWith(text(JSON.stringify(v)))),
  fc.oneof(fc.integer(), fc.double(), fc.string()).map((version) =>
    readyWith(text(JSON.stringify({ version }) + "\n"))
  ),
  anyLengthBlob.map((blob) => new Uint8Array([READY_BYTE, ...blob])),
  fc.nat().map((cut) =>
    encodeReady().subarray(0, 1 + cut % (encodeReady().length - 1))
  ),
).filter((bytes) => !completesHandover(bytes));

const anySuccessor: fc.Arbitrary<SuccessorScript> = fc.record({
  readFirst: fc.boolean(),
  bytes: successorBytes,
  attachFd: fc.boolean(),
});

/** Plays `script` as a successor to the owner `owner` of `dir`, until the owner hangs up. */
async function playSuccessor(
  dir: string,
  owner: number,
  script: SuccessorScript,
) {
  const fd = openSocket("unix", "stream");
  const [attached, otherEnd] = pipe();
  try {
    connect(fd, {
      family: "unix",
      path: controlSocketPath(dir, String(owner)),
    });
    setNonBlocking(fd, true);
    if (script.readFirst) {
      await waitReadable(fd, { signal: AbortSignal.timeout(10_000) });
      receiveWithFds(fd, 65536, 253, { dontWait: true })?.fds.forEach(close);
    }
    await sendIgnoringHangUp(
      fd,
      script.bytes,
      script.attachFd ? [attached] : [],
    );
    shutdown(fd, SHUT_WR);
    await drain(fd);
  } finally {
    [fd, attached, otherEnd].forEach(close);
  }
}

test(
  "props: a real owner refuses anything a fake successor sends, keeps serving, leaks nothing, then hands over",
  async () => {
    const group = new ProcessGroup();
    const other = runtime === "deno" ? "bun" : "deno";
    await withDir(async (dir) => {
      try {
        const args = ["--dir", dir, "--serve", "--tcp-listeners", "1"];
        const owner = new Peer(group, runtime, [
          ...args,
          "--upgrade-timeout",
          "5000",
        ]);
        await owner.event("ready");
        const { descriptors } = await owner.event("created");
        const port = Number(descriptors[0].addr.split(":").pop());
        assertEquals(await ask({ host: "127.0.0.1", port }), owner.pid);

        // A real successor takes the lock before connecting; so does the fake one.
        const lock = await OwnerLock.acquire(dir, AbortSignal.timeout(10_000));
        await playSuccessor(dir, owner.pid, {
          readFirst: true,
          bytes: text("?"),
          attachFd: false,
        });
        const before = await owner.fds();
        const rssBefore = rssKiB(owner.pid);
        await fc.assert(
          fc.asyncProperty(anySuccessor, async (script) => {
            await playSuccessor(dir, owner.pid, script);
            assertEquals(await ask({ host: "127.0.0.1", port }), owner.pid);
          }),
          RUNS,
        );
        const after = await owner.fds();
        assertEquals(after, { fds: before.fds, state: "owner" });
        const grown = rssKiB(owner.pid) - rssBefore;
        assert(grown < RSS_SLACK_KIB, `the owner's RSS grew by ${grown} KiB`);
        lock.release();

        const next = new Peer(group, other, [...args]);
        await next.event("ready");
        await owner.gone();
        assertEquals(await ask({ host: "127.0.0.1", port }), next.pid);
      } finally {
        await group.close();
      }
    });
  },
  { timeout: 120_000 },
);
