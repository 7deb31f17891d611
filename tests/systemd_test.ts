/**
 * The shipped unit files (`examples/systemd/`) under a real systemd 252
 * running as PID 1 of its own namespaces (`testing/systemd.ts`), with only
 * their paths rewritten: the runtime running these tests runs the service,
 * so the Deno and the Bun pass together cover both. Every scenario runs
 * under loopback load, keep-alive and new-connection clients, with no
 * request allowed to fail, and `tableroll status` must name the process
 * that `systemctl show -p MainPID` names after every step.
 */
import { chmodSync, copyFileSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { onlyUnder, runtime, test } from "./support/harness.ts";
import { assert, assertEquals } from "./support/assert.ts";
import { until } from "./support/until.ts";
import { buildHello, commandLine, ROOT } from "../testing/copies.ts";
import { bodyFrom, type Load, startLoad } from "../testing/load.ts";
import { freePort } from "../testing/rolling.ts";
import { now } from "../testing/clock.ts";
import {
  bootSystemd,
  type Systemd,
  systemdUnavailable,
} from "../testing/systemd.ts";

const RELOADS = 10;
const RESTARTS = 3;
const SERVICE = "hello.service";
const SOCKET = "hello.socket";
/** The coordination directory of the units (`RuntimeDirectory=hello`). */
const DIR = "/run/hello";
/** hello.service's `PIDFile=`, as the namespaces see it. */
const PID_FILE = `${DIR}/hello.pid`;
/** What the shipped units run and where they listen, as written there. */
const SHIPPED_COMMAND =
  "/usr/local/bin/deno run --allow-all /opt/hello/examples/hello.ts";
const SHIPPED_ADDRESS = "127.0.0.1:8080";

const unavailable = systemdUnavailable();

/**
 * The shipped unit `name`, serving on `port` and running `command`
 * (default: examples/hello.ts of this checkout under this runtime).
 */
function shippedUnit(
  name: string,
  port: number,
  command: string[] = commandLine(runtime, "examples/hello.ts", []).flat(),
): string {
  const text = readFileSync(join(ROOT, "examples/systemd", name), "utf8");
  assert(
    text.includes(SHIPPED_ADDRESS),
    `${name} listens on ${SHIPPED_ADDRESS}`,
  );
  assert(
    name.endsWith(".socket") || text.includes(SHIPPED_COMMAND),
    `${name} runs ${SHIPPED_COMMAND}`,
  );
  assert(command.every((arg) => !/\s/.test(arg)), `no spaces in ${command}`);
  return text.replaceAll(SHIPPED_COMMAND, command.join(" "))
    .replaceAll(SHIPPED_ADDRESS, `127.0.0.1:${port}`);
}

/** hello.socket and hello.service, serving on `port`. */
function socketUnits(port: number): Record<string, string> {
  return {
    [SOCKET]: shippedUnit(SOCKET, port),
    [SERVICE]: shippedUnit(SERVICE, port),
  };
}

/** Loopback load on `port`: 2 keep-alive and 2 new-connection clients, 200 requests/s. */
function loadOn(port: number): Load {
  return startLoad({
    hostname: "127.0.0.1",
    port,
    keepAliveClients: 2,
    newConnectionClients: 2,
    rate: 200,
    maxRequests: 20_000,
  });
}

function served(load: Load, pid: number): number {
  return load.samples.filter((s) => s.pid === pid).length;
}

/** Waits until `pid` has answered a few requests of `load`. */
function servingLoad(load: Load, pid: number): Promise<true> {
  return until(() => served(load, pid) >= 3, `requests answered by ${pid}`);
}

function assertNoFailures(...loads: Load[]): void {
  const failed = loads.flatMap((l) => l.samples).filter((s) => s.error);
  assertEquals(failed.slice(0, 3), [], `${failed.length} failed requests`);
}

/**
 * Waits until `unit` runs (after `READY=1`) with a main process other than
 * `previous`, and returns that process.
 */
function running(sd: Systemd, unit: string, previous = 0): Promise<number> {
  return until(async () => {
    const s = await sd.show(unit, "MainPID", "ActiveState", "SubState");
    const pid = Number(s.MainPID);
    return s.ActiveState === "active" && s.SubState === "running" &&
      pid !== 0 && pid !== previous && pid;
  }, `${unit} running with a main process other than ${previous}`);
}

/** `tableroll status` inside the namespaces must name `mainPid` as the live owner. */
async function assertStatusNames(sd: Systemd, mainPid: number): Promise<void> {
  const result = await sd.run(
    ...commandLine(runtime, "cli/mod.ts", ["status", DIR, "--json"]),
  );
  assertEquals(
    result.code,
    0,
    `tableroll status: ${result.stdout}${result.stderr}`,
  );
  const report = JSON.parse(result.stdout);
  assertEquals(
    { pids: report.owner?.pids, alive: report.owner?.alive },
    { pids: [mainPid], alive: true },
    "tableroll status agrees with MainPID",
  );
}

/**
 * Each of `pids` (processes of `unit`) is gone, printed `DRAINED <pid>` and
 * was reaped by systemd with exit status 0 (its debug log), within 15 s.
 * The whole journal is searched: systemd 252's journald may file the first
 * lines of a service's stdout under init.scope, as it reads the writer's
 * cgroup before systemd has moved the new process into the unit's.
 */
async function assertDrainedAndExited(
  sd: Systemd,
  unit: string,
  pids: number[],
): Promise<void> {
  const exitOf = (journal: string, pid: number) =>
    new RegExp(`^Child ${pid} \\(.*\\) died \\((.*)\\)$`, "m").exec(journal)
      ?.[1];
  const journal = await until(
    async () => {
      const text = await sd.journal();
      return pids.every((pid) =>
        !sd.alive(pid) && text.includes(`DRAINED ${pid}\n`) &&
        exitOf(text, pid)
      ) && text;
    },
    `${pids.join(", ")} drained and reaped`,
    15_000,
  ).catch(async (err) => {
    const tail = (await sd.journal(unit)).split("\n").slice(-30).join("\n");
    throw new Error(
      `${err.message}; the journal of ${unit} ends with:\n${tail}`,
    );
  });
  for (const pid of pids) {
    assertEquals(
      exitOf(journal, pid),
      "code=exited, status=0/SUCCESS",
      `exit of ${pid}`,
    );
  }
}

/** Stops `unit` (no load running) and checks that it drained and ended well. */
async function stopCleanly(
  sd: Systemd,
  unit: string,
  mainPid: number,
): Promise<void> {
  await sd.systemctl("stop", unit);
  assertEquals(
    await sd.show(unit, "ActiveState", "Result"),
    { ActiveState: "inactive", Result: "success" },
    `${unit} after stop`,
  );
  await assertDrainedAndExited(sd, unit, [mainPid]);
}

function report(what: string, started: number, ...loads: Load[]): void {
  const requests = loads.reduce((n, l) => n + l.samples.length, 0);
  console.log(
    `systemd (${runtime}) ${what}: ${
      ((now() - started) / 1000).toFixed(1)
    } s, ${requests} requests`,
  );
}

const needsSystemd = { timeout: 120_000, skip: unavailable };

test(
  `systemd (${runtime}): hello.socket activates hello.service; ${RELOADS} reloads under load, then stop`,
  async () => {
    const started = now();
    const port = await freePort();
    await using sd = await bootSystemd({ units: socketUnits(port) });
    console.log(`systemd (${runtime}) booted in ${sd.bootMs.toFixed(0)} ms`);
    await sd.systemctl("start", SOCKET);
    assertEquals(
      (await sd.show(SERVICE, "ActiveState")).ActiveState,
      "inactive",
    );
    const load = loadOn(port);
    const old: number[] = [];
    let main: number;
    try {
      main = await running(sd, SERVICE);
      await assertStatusNames(sd, main);
      for (let i = 1; i <= RELOADS; i++) {
        await servingLoad(load, main);
        await sd.systemctl("reload", SERVICE);
        const next = await running(sd, SERVICE, main);
        await assertStatusNames(sd, next);
        assertEquals(
          sd.readFile(PID_FILE),
          `${next}\n`,
          "the PID file names the new main process",
        );
        old.push(main);
        main = next;
      }
      await servingLoad(load, main);
    } finally {
      await load.stop();
    }
    assertNoFailures(load);
    assert(load.samples[0].pid === old[0], "the first request was answered");
    await assertDrainedAndExited(sd, SERVICE, old);
    await stopCleanly(sd, SERVICE, main);
    report(`activation, ${RELOADS} reloads, stop`, started, load);
  },
  needsSystemd,
);

test(
  `systemd (${runtime}): hello.service restarted ${RESTARTS} times, then killed with SIGKILL and restarted by Restart=on-failure, the socket kept`,
  async () => {
    const started = now();
    const port = await freePort();
    await using sd = await bootSystemd({ units: socketUnits(port) });
    await sd.systemctl("start", SOCKET);
    const load = loadOn(port);
    let main: number;
    try {
      main = await running(sd, SERVICE);
      for (let i = 0; i < RESTARTS; i++) {
        await servingLoad(load, main);
        await sd.systemctl("restart", SERVICE);
        const restarted = await running(sd, SERVICE, main);
        await assertStatusNames(sd, restarted);
        await assertDrainedAndExited(sd, SERVICE, [main]);
        main = restarted;
      }
      await servingLoad(load, main);
    } finally {
      await load.stop();
    }
    // Requests the killed process had accepted die with it; what this
    // checks is the restart: requests sent from the kill on wait in the
    // socket that systemd keeps, and are answered by the new process.
    await sd.systemctl("kill", "--signal=SIGKILL", SERVICE);
    await until(() => !sd.alive(main), `${main} killed`);
    const afterKill = loadOn(port);
    try {
      const next = await running(sd, SERVICE, main);
      await assertStatusNames(sd, next);
      await servingLoad(afterKill, next);
      assertEquals(
        await sd.show(SERVICE, "NRestarts"),
        { NRestarts: "1" },
        "restarts",
      );
      assertEquals(
        await sd.show(SOCKET, "ActiveState"),
        { ActiveState: "active" },
      );
      main = next;
    } finally {
      await afterKill.stop();
    }
    assertNoFailures(load, afterKill);
    assert(
      (await sd.journal(SERVICE)).includes(
        "Main process exited, code=killed, status=9/KILL",
      ),
      "systemd saw the kill",
    );
    await stopCleanly(sd, SERVICE, main);
    report(
      `${RESTARTS} restarts, SIGKILL and restart`,
      started,
      load,
      afterKill,
    );
  },
  needsSystemd,
);

test(
  `systemd (${runtime}): hello@1 → hello@2 → hello@3 under load, each start returning once the instance serves`,
  async () => {
    const started = now();
    const port = await freePort();
    await using sd = await bootSystemd({
      units: { "hello@.service": shippedUnit("hello@.service", port) },
    });
    let load: Load | undefined;
    let previous: { unit: string; pid: number } | undefined;
    try {
      for (const n of [1, 2, 3]) {
        const unit = `hello@${n}.service`;
        await sd.systemctl("start", unit);
        // No waiting: the start returned, so this instance owns the socket.
        const pid = Number((await sd.show(unit, "MainPID")).MainPID);
        await assertStatusNames(sd, pid);
        load ??= loadOn(port);
        await servingLoad(load, pid);
        if (previous) {
          const { unit: old, pid: oldPid } = previous;
          const ended = await until(async () => {
            const s = await sd.show(old, "ActiveState", "Result");
            return s.ActiveState === "inactive" && s;
          }, `${old} ended by itself`);
          assertEquals(ended.Result, "success", `${old} result`);
          await assertDrainedAndExited(sd, old, [oldPid]);
        }
        previous = { unit, pid };
      }
    } finally {
      await load?.stop();
    }
    assertNoFailures(load!);
    await stopCleanly(sd, previous!.unit, previous!.pid);
    report("hello@1 → hello@2 → hello@3", started, load!);
  },
  needsSystemd,
);

test(
  "systemd: a bun build --compile binary as ExecStart=, replaced on disk by a rename, then reloaded",
  async () => {
    const started = now();
    const port = await freePort();
    await using sd = await bootSystemd({
      units: { [SOCKET]: shippedUnit(SOCKET, port) },
    });
    // Built into the folder that systemd's namespaces see.
    const binary = join(sd.tmp, "hello");
    buildHello("a", binary);
    buildHello("b", join(sd.tmp, "hello-b"));
    const builtAt = now();
    await sd.installUnit(SERVICE, shippedUnit(SERVICE, port, [binary]));
    await sd.systemctl("start", SOCKET);
    const load = loadOn(port);
    try {
      const first = await running(sd, SERVICE);
      await assertStatusNames(sd, first);
      assert(
        (await bodyFrom(port, first)).includes("(version a)"),
        "the first build answers",
      );
      await servingLoad(load, first);
      // A deployment: the new build written next to the old, renamed over it.
      copyFileSync(join(sd.tmp, "hello-b"), `${binary}.new`);
      chmodSync(`${binary}.new`, 0o755);
      renameSync(`${binary}.new`, binary);
      await sd.systemctl("reload", SERVICE);
      const next = await running(sd, SERVICE, first);
      await assertStatusNames(sd, next);
      const body = await bodyFrom(port, next);
      assert(body.includes("(version b)"), `the new build answers: ${body}`);
      await servingLoad(load, next);
      await load.stop();
      assertNoFailures(load);
      await assertDrainedAndExited(sd, SERVICE, [first]);
      await stopCleanly(sd, SERVICE, next);
    } finally {
      await load.stop();
    }
    console.log(
      `systemd (bun) two builds: ${((builtAt - started) / 1000).toFixed(1)} s`,
    );
    report("compiled binary, rename, reload", builtAt, load);
  },
  {
    ...needsSystemd,
    skip: onlyUnder(
      "bun",
      "the binary embeds Bun whatever runs the suite: once is enough",
    ) ?? unavailable,
  },
);
