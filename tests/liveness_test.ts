/**
 * Whether a control socket or a Unix listener is live is asked of the
 * kernel, by a non-blocking connect: another process with the same id under
 * another spelling of the directory is refused and the live socket
 * survives, and a busy socket is neither replaced nor waited on.
 */
import { join, relative } from "node:path";
import { existsSync, mkdirSync, symlinkSync } from "node:fs";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import {
  close,
  connect,
  listenOn,
  openSocket,
  type SyscallError,
} from "../ffi/mod.ts";
import { type TablerollError, Upgrader } from "../mod.ts";
import { ask } from "./fixtures/upgrader_peers.ts";
import {
  assertOwner,
  owning,
  peer,
  type Place,
  withDir,
  withPlace,
} from "./fixtures/places.ts";

/**
 * The same id as a live owner, with `spell(place)` naming its directory
 * another way: refused, and the owner's control socket survives (a later
 * successor with its own id takes over from it).
 */
async function sameIdElsewhere(
  place: Place,
  spell: (place: Place) => string,
): Promise<void> {
  const [owner, port] = await owning(place, ["--id", "same"]);
  await assertRejects(
    Upgrader.create(spell(place), { id: "same" }),
    "id-in-use",
    "another process uses this id",
  );
  assert(
    existsSync(join(place.dir, "same.sock")),
    "the owner's socket is there",
  );
  assertEquals(await ask({ host: "127.0.0.1", port }), owner.pid);
  const next = peer(place, "--fd", "web=tcp:127.0.0.1:0", "--serve");
  await next.event("ready");
  await owner.gone();
  await assertOwner(place, next, port);
}

test(`liveness (${runtime}): the same id under a relative spelling of the directory is refused`, () =>
  withPlace((place) =>
    sameIdElsewhere(place, ({ dir }) => relative(process.cwd(), dir))
  ));

test(`liveness (${runtime}): the same id through a symlinked directory is refused`, () =>
  withPlace((place) =>
    sameIdElsewhere(place, ({ tmp, dir }) => {
      const link = join(tmp, "link");
      symlinkSync(dir, link);
      return link;
    })
  ));

/** A listening Unix socket at `path` that accepts nothing, its backlog full. */
function fullBacklog(path: string): { close(): void } {
  const listener = listenOn({ family: "unix", path }, { backlog: 1 });
  const clients: number[] = [];
  for (;;) {
    const fd = openSocket("unix", "stream", { nonblocking: true });
    clients.push(fd);
    try {
      connect(fd, { family: "unix", path });
    } catch (err) {
      if ((err as SyscallError).code === "EAGAIN") break; // ffi: errno
      throw err;
    }
  }
  return { close: () => [listener, ...clients].forEach(close) };
}

test("liveness: a live socket with a full backlog is neither replaced nor waited on", async () => {
  await withDir(async (dir) => {
    const control = fullBacklog(join(dir, "busy.sock"));
    const other = join(dir, "other");
    mkdirSync(other, { mode: 0o700 });
    const unix = fullBacklog(join(other, "web.sock"));
    try {
      await assertRejects(
        Upgrader.create(dir, { id: "busy" }),
        "id-in-use",
        "another process uses this id",
      );
      const upgrader = await Upgrader.create(dir, { id: "free" });
      try {
        const err = assertThrowsSync(() =>
          upgrader.fds.listen("web", { path: join(other, "web.sock") })
        );
        assertEquals((err as TablerollError).errno, "EADDRINUSE");
      } finally {
        await upgrader.stop();
      }
      assert(existsSync(join(dir, "busy.sock")), "the busy socket is there");
    } finally {
      control.close();
      unix.close();
    }
  });
});

function assertThrowsSync(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}
