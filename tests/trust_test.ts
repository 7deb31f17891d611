/**
 * What a coordination directory must look like, and a local attacker of
 * another user (`nobody`) posing as the owner: refused before anything it
 * sends is used. Acting as another user takes root; as any other user those
 * tests are skipped.
 */
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { runtime, test } from "./support/harness.ts";
import { asRoot } from "./support/requirements.ts";
import { assert, assertEquals, assertRejects } from "./support/assert.ts";
import { Upgrader } from "../mod.ts";
import type { Child } from "../testing/processes.ts";
import { TIMEOUT_MS } from "./fixtures/upgrader_peers.ts";
import {
  assertOwner,
  owning,
  peer,
  type Place,
  WEB,
  withDir,
  withPlace,
} from "./fixtures/places.ts";

const NOBODY = 65534;

/** Unless this process may act as `nobody`: give it files, run it with setpriv. */
const asNobody = asRoot("give files to nobody and run processes as nobody");

test(`trust (${runtime}): a directory other users can write is refused at create(), sticky or not`, async () => {
  await withDir(async (dir) => {
    for (const mode of [0o777, 0o770, 0o1777, 0o720, 0o702]) {
      chmodSync(dir, mode);
      const err = await assertRejects(
        Upgrader.create(dir),
        "bad-directory",
        `chmod 0700 ${dir}`,
      );
      assert(
        err.message.includes(`mode 0${mode.toString(8)}`),
        err.message,
      );
      assert(
        mode & 0o1000 ? err.message.includes("sticky") : true,
        err.message,
      );
    }
    chmodSync(dir, 0o700);
    const upgrader = await Upgrader.create(dir);
    await upgrader.stop();
  });
});

test(`trust (${runtime}): a pid file others can write is refused at create()`, async () => {
  await withDir(async (dir) => {
    const pid = join(dir, "pid");
    writeFileSync(pid, "");
    chmodSync(pid, 0o666);
    await assertRejects(
      Upgrader.create(dir),
      "bad-directory",
      `chmod go-w ${pid}`,
    );
    chmodSync(pid, 0o755);
    const upgrader = await Upgrader.create(dir);
    await upgrader.stop();
  });
});

test(
  `trust (${runtime}): a pid file of another user is refused at create()`,
  async () => {
    await withDir(async (dir) => {
      const pid = join(dir, "pid");
      writeFileSync(pid, "");
      chownSync(pid, NOBODY, NOBODY);
      await assertRejects(
        Upgrader.create(dir),
        "bad-directory",
        `${pid} belongs to uid ${NOBODY}`,
      );
      chownSync(pid, process.getuid!(), process.getgid!());
      const upgrader = await Upgrader.create(dir);
      await upgrader.stop();
    });
  },
  { skip: asNobody },
);

/**
 * Runs `command` as `nobody`, with only the system's programs on its path
 * (root's own may be in directories nobody cannot enter).
 */
function spawnAsNobody({ group }: Place, command: string[]): Child {
  return group.spawn("setpriv", [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    "--clear-groups",
    ...command,
  ], { PATH: "/usr/local/bin:/usr/bin:/bin" });
}

/**
 * A directory of `nobody`'s in `place` (outside the coordination directory)
 * holding its copy of tests/fixtures/impostor.py: the checkout may be where
 * nobody cannot enter (a home directory, a private temporary directory).
 */
function attackerDir(place: Place): string {
  chmodSync(place.tmp, 0o711);
  const dir = join(place.tmp, "nobody");
  mkdirSync(dir, { mode: 0o700 });
  copyFileSync(
    join(import.meta.dirname!, "fixtures", "impostor.py"),
    join(dir, "impostor.py"),
  );
  for (const path of [dir, join(dir, "impostor.py")]) {
    chownSync(path, NOBODY, NOBODY);
  }
  return dir;
}

/** The impostor, run as `nobody` from `attacker` (its directory), listening at `path`. */
async function impostor(
  place: Place,
  attacker: string,
  path: string,
  claimed: string,
): Promise<Child> {
  const child = spawnAsNobody(place, [
    "python3",
    join(attacker, "impostor.py"),
    path,
    claimed,
  ]);
  await child.waitForLine(/^LISTENING /, TIMEOUT_MS);
  return child;
}

/** Starts a successor that must fail in create(); resolves with its stderr. */
async function refusedSuccessor(place: Place): Promise<string> {
  const p = peer(place, "--fd", WEB, "--serve");
  const exit = await p.child.exited;
  assertEquals(exit.code, 1, `${p.pid} exit status`);
  assert(
    !p.child.output.includes("inherited"),
    `it used what the impostor sent: ${p.child.output}`,
  );
  return p.child.stderrTail;
}

test(
  `trust (${runtime}): an impostor of another user on the owner's control socket is refused before anything is read`,
  () =>
    withPlace(async (place) => {
      const [first, port] = await owning(place);
      const ownerSock = join(place.dir, `${first.pid}.sock`);
      const evil = attackerDir(place);
      // What a writable directory would have let nobody do: unlink the
      // owner's socket and bind its own in its place. The owner's socket is
      // kept aside to show that the owner itself is unharmed.
      const liar = await impostor(
        place,
        evil,
        join(evil, "s.sock"),
        `127.0.0.1:${port}`,
      );
      renameSync(ownerSock, `${ownerSock}.kept`);
      renameSync(join(evil, "s.sock"), ownerSock);

      // As nobody left it: refused for the file's owner, before connecting.
      const planted = await refusedSuccessor(place);
      assert(
        planted.includes(`${ownerSock} belongs to uid ${NOBODY}`),
        planted,
      );

      // Even with the file made to look like the service's own, the
      // process behind it is not: refused on its credentials, unread.
      chownSync(ownerSock, 0, 0);
      const served = await refusedSuccessor(place);
      assert(served.includes("TablerollError"), served);
      assert(served.includes(`of uid ${NOBODY}`), served);
      assert(served.includes("nothing was read"), served);
      await liar.waitForLine(/^ACCEPTED /, TIMEOUT_MS);
      await liar.waitForLine(/^CLOSED/, TIMEOUT_MS);

      // The owner kept serving; with its socket back, the next upgrade works.
      rmSync(ownerSock);
      renameSync(`${ownerSock}.kept`, ownerSock);
      await assertOwner(place, first, port);
      const [next] = await owning(place);
      await first.gone();
      await assertOwner(place, next, port);
    }),
  { skip: asNobody },
);

test(
  `trust (${runtime}): the attack through a world-writable directory stops at the successor's create()`,
  () =>
    withPlace(async (place) => {
      const [first, port] = await owning(place);
      const ownerSock = join(place.dir, `${first.pid}.sock`);
      const evil = attackerDir(place);
      chmodSync(place.dir, 0o777); // a mistake after the owner started
      // As an attacker would: delete the owner's socket, bind one's own there.
      const unlinker = spawnAsNobody(place, ["rm", ownerSock]);
      assertEquals(
        (await unlinker.exited).code,
        0,
        `nobody removed the socket: ${unlinker.stderrTail}`,
      );
      await impostor(place, evil, ownerSock, `127.0.0.1:${port}`);
      const stderr = await refusedSuccessor(place);
      assert(stderr.includes(`chmod 0700 ${place.dir}`), stderr);
      // The owner still serves what it accepts.
      assertEquals((await first.fds()).state, "owner");
    }),
  { skip: asNobody },
);
