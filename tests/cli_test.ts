/**
 * The `tableroll` command line against real coordination directories: real
 * owners, successors and killed processes, read from /proc.
 */
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { runtime, test } from "./support/harness.ts";
import { withReference } from "./support/requirements.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { type Place, withPlace } from "./fixtures/place.ts";
import { commandLine } from "../testing/copies.ts";
import { freePort } from "../testing/rolling.ts";
import { Peer } from "./fixtures/upgrader_peers.ts";
import { runCli } from "./fixtures/cli_run.ts";
import type { DirectoryStatus } from "../cli/inspect.ts";

const peer = ({ group, dir }: Place, ...args: string[]) =>
  new Peer(group, runtime, ["--dir", dir, ...args]);

/** `tableroll status DIR --json`: the exit code and the report. */
async function status(
  dir: string,
): Promise<{ code: number | null; report: DirectoryStatus }> {
  const run = await runCli(runtime, ["status", dir, "--json"]);
  assertEquals(run.stderr, "", "status wrote to stderr");
  return { code: run.code, report: JSON.parse(run.stdout) };
}

test("cli: every command has --help; bad command lines exit 2", async () => {
  for (const args of [["--help"], ["status", "--help"], ["clean", "-h"]]) {
    const run = await runCli(runtime, args);
    assertEquals(run.code, 0, args.join(" "));
    assert(run.stdout.startsWith("usage: tableroll"), run.stdout);
    assert(/Exit status|Commands/.test(run.stdout), run.stdout);
  }
  for (
    const args of [
      [],
      ["frobnicate", "/tmp"],
      ["status"],
      ["status", "a", "b"],
      ["clean", "--nope", "/tmp"],
    ]
  ) {
    const run = await runCli(runtime, args);
    assertEquals(run.code, 2, args.join(" "));
    assert(/usage: tableroll/.test(run.stderr), run.stderr);
  }
});

test("cli: status of a missing directory exits 1 and says so", async () => {
  const run = await runCli(runtime, ["status", "/tmp/tr-does-not-exist/c"]);
  assertEquals(run.code, 1);
  assert(/does not exist/.test(run.stderr), run.stderr);
});

test("cli: status of an empty directory: no owner, exit 3", () =>
  withPlace(async ({ dir }) => {
    const { code, report } = await status(dir);
    assertEquals(code, 3);
    assertEquals(
      [report.owner, report.lock, report.handover, report.sockets],
      [null, null, null, []],
    );
    const text = await runCli(runtime, ["status", dir]);
    assertEquals(text.code, 3);
    assert(/owner\s+none recorded/.test(text.stdout), text.stdout);
  }));

test("cli: status of a live owner: pid, listeners, its socket", () =>
  withPlace(async (place) => {
    const unixPath = join(place.tmp, "api.sock");
    const owner = peer(
      place,
      "--tcp-listeners",
      "1",
      "--fd",
      `api=unix:${unixPath}`,
      "--fd",
      "dns=udp:127.0.0.1:0",
    );
    const { descriptors } = await owner.event("created");
    await owner.event("ready");
    const { code, report } = await status(place.dir);
    assertEquals(code, 0);
    assertEquals(report.owner?.id, String(owner.pid));
    assertEquals(report.owner?.pids, [owner.pid]);
    assertEquals(report.owner?.alive, true);
    assertEquals(report.lock, null);
    assertEquals(report.handover, null);
    const addr = (name: string) =>
      descriptors.find((d) => d.name === name)!.addr;
    assertEquals(
      report.listeners.map((l) => `${l.protocol} ${l.address}`).sort(),
      [`tcp ${addr("l0")}`, `udp ${addr("dns")}`, `unix ${unixPath}`].sort(),
    );
    assertEquals(report.sockets.map((s) => [s.id, s.pids, s.role]), [
      [String(owner.pid), [owner.pid], "owner"],
    ]);
    const text = await runCli(runtime, ["status", place.dir]);
    assertEquals(text.code, 0);
    assert(
      new RegExp(`owner\\s+id ${owner.pid}, pid ${owner.pid}, alive`).test(
        text.stdout,
      ),
      text.stdout,
    );
    assert(text.stdout.includes(`tcp ${addr("l0")}`), text.stdout);
  }));

test("cli: status of an owner mid-handover: the successor holds the lock, exit 4", () =>
  withPlace(async (place) => {
    const owner = peer(place, "--tcp-listeners", "1");
    await owner.event("ready");
    // The successor receives the listeners, then never says it is ready.
    const successor = peer(place, "--tcp-listeners", "1", "--ready", "never");
    await successor.event("created");
    const { code, report } = await status(place.dir);
    assertEquals(code, 4);
    assertEquals(report.owner?.pids, [owner.pid]);
    assertEquals(report.lock?.pid, successor.pid);
    assertEquals(report.lock?.id, String(successor.pid));
    assert(
      report.lock!.heldAtMostMs! > 0 && report.lock!.heldAtMostMs! < 60_000,
      `held at most ${report.lock!.heldAtMostMs} ms`,
    );
    assertEquals(report.handover, {
      connections: 1,
      successorPid: successor.pid,
    });
    assertEquals(report.listeners.map((l) => l.sharedWith), [[successor.pid]]);
    assertEquals(
      report.sockets.map((s) => [s.id, s.role]).sort(),
      [[String(owner.pid), "owner"], [String(successor.pid), "successor"]]
        .sort(),
    );
    const text = await runCli(runtime, ["status", place.dir]);
    assert(
      new RegExp(`handover\\s+pid ${successor.pid} is taking over`).test(
        text.stdout,
      ),
      text.stdout,
    );
  }));

test("cli: a killed owner leaves a stale socket; clean removes only that", () =>
  withPlace(async (place) => {
    const dead = peer(place, "--tcp-listeners", "1");
    await dead.event("ready");
    dead.child.kill("SIGKILL");
    await dead.child.exited;
    // A live process of another directory's kind: a socket file that is served.
    const live = peer(place, "--id", "other", "--ready", "never");
    await live.event("created");
    const { code, report } = await status(place.dir);
    assertEquals(code, 3);
    assertEquals(report.owner?.id, String(dead.pid));
    assertEquals(report.owner?.alive, false);
    assertEquals(
      report.sockets.map((s) => [s.id, s.role]).sort(),
      [[String(dead.pid), "stale"], ["other", "successor"]].sort(),
    );
    const text = await runCli(runtime, ["status", place.dir]);
    assert(/nothing serves its control socket/.test(text.stdout), text.stdout);

    const stalePath = join(place.dir, `${dead.pid}.sock`);
    const livePath = join(place.dir, "other.sock");
    const dry = await runCli(runtime, ["clean", place.dir, "--dry-run"]);
    assertEquals([dry.code, dry.stdout], [0, `would remove ${stalePath}\n`]);
    assert(existsSync(stalePath), "the dry run removed the socket");

    const cleaned = await runCli(runtime, ["clean", place.dir, "--json"]);
    assertEquals(cleaned.code, 0, cleaned.stderr);
    assertEquals(JSON.parse(cleaned.stdout), {
      removed: [stalePath],
      kept: [livePath],
    });
    assertEquals([existsSync(stalePath), existsSync(livePath)], [false, true]);
    assert(existsSync(join(place.dir, "pid")), "clean removed the lock file");
    const again = await runCli(runtime, ["clean", place.dir]);
    assertEquals([again.code, again.stdout], [
      0,
      `nothing stale in ${place.dir}\n`,
    ]);
  }));

test("cli: clean never removes a socket a process has bound, even one it never listens on", () =>
  withPlace(async ({ dir }) => {
    // A listening socket whose path is in the directory but is not ours.
    const path = join(dir, "foreign.sock");
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const run = await runCli(runtime, ["clean", dir, "--json"]);
      assertEquals(JSON.parse(run.stdout), { removed: [], kept: [path] });
      assert(existsSync(path));
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }));

test("cli: status of a Go-style directory: ids that are not pids, a relative directory, a stale socket", () =>
  withPlace(async (place) => {
    // What a Go process killed before Stop() leaves behind: its socket file.
    const killed = peer(place, "--id", "api-green", "--tcp-listeners", "1");
    await killed.event("ready");
    killed.child.kill("SIGKILL");
    await killed.child.exited;
    // Go services choose their ids and often pass the directory relative to their cwd.
    const [cmd, args] = commandLine(
      runtime,
      "tests/fixtures/upgrader_peer.ts",
      [
        "--dir",
        "c",
        "--id",
        "api-blue",
        "--tcp-listeners",
        "1",
      ],
    );
    const child = place.group.spawn("sh", [
      "-c",
      `cd '${place.tmp}' && exec "$0" "$@"`,
      cmd,
      ...args,
    ]);
    await child.waitForLine(/"event":"ready"/, 20_000);
    const { code, report } = await status(place.dir);
    assertEquals(code, 0);
    assertEquals(report.owner?.id, "api-blue");
    assertEquals(report.owner?.pids, [child.pid]);
    assertEquals(report.listeners.length, 1);
    assertEquals(
      report.sockets.map((s) => [s.id, s.pids, s.role]),
      [["api-blue", [child.pid], "owner"], ["api-green", [], "stale"]],
    );
  }));

/** Starts `examples/hello.ts` (or the reference binary) in `dir` and waits for its READY line. */
async function startHello(
  { group, dir }: Place,
  which: "deno" | "bun" | "reference",
  addr: string,
  ...flags: string[]
) {
  const child = group.spawn(
    ...commandLine(which, "examples/hello.ts", [
      "--dir",
      dir,
      "--addr",
      addr,
      ...flags,
    ]),
  );
  await child.waitForLine(/^READY \d+$/, 20_000);
  return child;
}

test("cli: status shows a predecessor draining its in-flight requests", () =>
  withPlace(async (place) => {
    const addr = `127.0.0.1:${await freePort()}`;
    // Under Bun.serve's 10 s idle timeout, which would cut a slower request.
    const old = await startHello(place, runtime, addr, "--delay", "9000");
    const slow = fetch(`http://${addr}/`).then((r) => r.text());
    await new Promise((resolve) => setTimeout(resolve, 300));
    const next = await startHello(place, runtime, addr, "--delay", "9000");
    // Both views at once, while the slow request is still in flight.
    const [{ code, report }, text] = await Promise.all([
      status(place.dir),
      runCli(runtime, ["status", place.dir]),
    ]);
    assertEquals(code, 0);
    assertEquals(report.owner?.pids, [next.pid]);
    assertEquals(
      report.sockets.map((s) => [s.id, s.role]).sort(),
      [[String(next.pid), "owner"], [String(old.pid), "draining"]].sort(),
    );
    assert(
      new RegExp(`draining\\s+pid ${old.pid}`).test(text.stdout),
      text.stdout,
    );
    assertEquals(await slow, `hello from ${old.pid}\n`);
  }));

test(
  "cli: status reads a live reference (Go tableroll) owner",
  () =>
    withPlace(async (place) => {
      const addr = `127.0.0.1:${await freePort()}`;
      const owner = await startHello(place, "reference", addr);
      const { code, report } = await status(place.dir);
      assertEquals(code, 0);
      assertEquals(report.owner?.pids, [owner.pid]);
      assertEquals(report.owner?.alive, true);
      assertEquals(report.listeners.map((l) => `${l.protocol} ${l.address}`), [
        `tcp ${addr}`,
      ]);
      assertEquals(report.sockets.map((s) => s.role), ["owner"]);
    }),
  { skip: withReference },
);
