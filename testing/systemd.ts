/**
 * A real systemd for tests: `/lib/systemd/systemd` booted as PID 1 of new
 * pid, mount, uts, ipc and cgroup namespaces, with only the units a test
 * installs, driven with `systemctl` and `journalctl` through `nsenter`, and
 * torn down so that nothing of it is left on the machine (which
 * {@linkcode Systemd.close} checks).
 *
 * ```ts ignore
 * await using sd = await bootSystemd({ units: { "a.service": text } });
 * await sd.systemctl("start", "a.service");
 * const { MainPID } = await sd.show("a.service", "MainPID");
 * ```
 *
 * What keeps it off the machine: its own cgroup2 child cgroup (the root of
 * its cgroup namespace, removed afterwards); private `/run`, `/dev`, `/tmp`
 * and `/var/tmp`; `/sys` and `/proc/sys` read-only; an overlay on
 * `/etc/systemd` with an empty `/etc/systemd/system`; no stock units (the
 * Debian ones would run tmpfiles, sysusers and udev against the machine),
 * only stand-in targets, journald (volatile) and the test's units;
 * `CAP_SYS_MODULE` and `CAP_SYS_TIME` dropped. systemd logs at debug level,
 * so its journal also tells how every process of a unit ended (`Child N
 * (comm) died (code=exited, status=0/SUCCESS)`). The network namespace is the
 * machine's: services listen on its loopback, where the tests reach them.
 * The root filesystem is shared, so the test's temporary folder (unit
 * files, builds) and the checkout are visible inside at their paths, even
 * under `/tmp` or `/var/tmp`; the rest of the machine's `/tmp` is not. Teardown checks what a leak would leave: processes of the
 * pid namespace, mounts, cgroups, changes under `/etc`, `/run` and `/var`.
 *
 * @module
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { basename, join } from "node:path";
import process from "node:process";
import { now, sleep } from "./clock.ts";
import { ROOT } from "./copies.ts";

const SYSTEMD = "/lib/systemd/systemd";
const STOCK_UNITS = "/lib/systemd/system";
const TOOLS = ["unshare", "nsenter", "script", "setpriv", "mount", "mknod"];
/** Trees of the machine compared before boot and after teardown. */
const WATCHED_TREES = ["/etc", "/run", "/var"];

/**
 * Why a systemd cannot be booted here, or `undefined` when it can: not
 * root, no systemd binary or tools, no cgroup2 hierarchy, namespaces refused.
 */
export function systemdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "booting systemd needs root";
  if (!existsSync(SYSTEMD)) return `${SYSTEMD} is missing (Debian: systemd)`;
  const missing = TOOLS.filter((tool) =>
    spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0
  );
  if (missing.length > 0) return `missing tools: ${missing.join(", ")}`;
  if (!cgroup2Root()) return "no cgroup2 hierarchy is mounted";
  const probe = spawnSync("unshare", [
    "--pid",
    "--mount",
    "--uts",
    "--ipc",
    "--cgroup",
    "--fork",
    "true",
  ], { encoding: "utf8" });
  if (probe.status !== 0) {
    return `unshare refused new namespaces: ${probe.stderr.trim()}`;
  }
  return undefined;
}

/** Options of {@linkcode bootSystemd}. */
export interface BootOptions {
  /** Unit files to install before boot, by file name. */
  units?: Record<string, string>;
  /** Upper bound of the boot in milliseconds (default 30 000). */
  timeoutMs?: number;
}

/** What a command run inside the namespaces printed, and its status. */
export interface CommandResult {
  /** Exit status (`null` when a signal ended it). */
  code: number | null;
  /** Its standard output. */
  stdout: string;
  /** Its standard error. */
  stderr: string;
}

/**
 * Boots systemd and resolves once it reports `running`. Dispose of it (or
 * call {@linkcode Systemd.close}) to tear it down.
 */
export async function bootSystemd(options: BootOptions = {}): Promise<Systemd> {
  const before = snapshotHost();
  const tmp = mkdtempSync("/tmp/tableroll-systemd-");
  const cgroup = join(cgroup2Root()!, basename(tmp));
  try {
    mkdirSync(join(tmp, "units"));
    const units = { ...baseUnits(), ...options.units };
    for (const [name, text] of Object.entries(units)) {
      writeFileSync(join(tmp, "units", name), text);
    }
    writeFileSync(join(tmp, "init.sh"), INIT_SCRIPT);
    mkdirSync(cgroup);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  const started = now();
  // `script` gives PID 1 a pty for its console (boot messages land in
  // console.log); the first stage joins the cgroup, then a cgroup namespace
  // rooted there.
  const wrapper = spawn("script", [
    "-qfec",
    `exec unshare --pid --mount --uts --ipc --fork --mount-proc --propagation private /bin/sh ${
      join(tmp, "init.sh")
    } stage1`,
    join(tmp, "console.log"),
  ], {
    stdio: "ignore",
    env: {
      PATH: process.env.PATH,
      SHELL: "/bin/sh",
      T: tmp,
      R: ROOT.replace(/\/$/, ""),
      CG: cgroup,
    },
  });
  const exited = new Promise<void>((resolve) => {
    wrapper.on("exit", () => resolve());
    wrapper.on("error", () => resolve());
  });
  const sd = new Systemd(tmp, cgroup, wrapper, exited, before);
  try {
    const deadline = Date.now() + (options.timeoutMs ?? 30_000);
    await sd.attach(deadline);
    const state = await sd.run(
      "timeout",
      [
        String(Math.max(1, Math.ceil((deadline - Date.now()) / 1000))),
        "systemctl",
        "is-system-running",
        "--wait",
      ],
    );
    if (state.stdout.trim() !== "running") {
      throw new Error(
        `systemd did not reach running: ${state.stdout.trim()} ${state.stderr.trim()}`,
      );
    }
    sd.bootMs = now() - started;
    return sd;
  } catch (err) {
    const console = sd.console();
    const left = await sd.close();
    throw new Error(
      `${(err as Error).message}\nconsole:\n${console}${
        left.length ? `\nleft behind: ${left.join("; ")}` : ""
      }`,
    );
  }
}

/** A running systemd in its namespaces. */
export class Systemd implements AsyncDisposable {
  /** The test's temporary folder, visible inside at the same path; removed at teardown. */
  readonly tmp: string;
  /** Milliseconds from the start of the boot to `running`. */
  bootMs = 0;
  /** Milliseconds the teardown took. */
  teardownMs = 0;
  readonly #cgroup: string;
  readonly #wrapper: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #before: HostSnapshot;
  #pid = 0;
  #pidNamespace = "";
  #closed: Promise<string[]> | undefined;

  /** Use {@linkcode bootSystemd}. */
  constructor(
    tmp: string,
    cgroup: string,
    wrapper: ChildProcess,
    exited: Promise<void>,
    before: HostSnapshot,
  ) {
    this.tmp = tmp;
    this.#cgroup = cgroup;
    this.#wrapper = wrapper;
    this.#exited = exited;
    this.#before = before;
  }

  /** PID 1 of the namespaces, as this machine numbers it. */
  get pid(): number {
    return this.#pid;
  }

  /** Finds PID 1 (the child of `unshare`) and waits for its control socket; for {@linkcode bootSystemd}. */
  async attach(deadline: number): Promise<void> {
    const unshare = await poll(
      () => childrenOf(this.#wrapper.pid!)[0],
      "unshare",
      deadline,
    );
    this.#pid = await poll(() => childrenOf(unshare)[0], "PID 1", deadline);
    this.#pidNamespace = readlinkSync(`/proc/${this.#pid}/ns/pid`);
    await poll(
      () => existsSync(`/proc/${this.#pid}/root/run/systemd/private`),
      "systemd's control socket",
      deadline,
    );
  }

  /**
   * Runs `command` inside the namespaces; rejects if it runs longer than
   * `timeoutMs` (it is killed). A non-zero status is not an error here.
   */
  run(
    command: string,
    args: string[],
    timeoutMs = 30_000,
  ): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        "nsenter",
        ["-t", String(this.#pid), "-a", command, ...args],
        {
          stdio: ["ignore", "pipe", "pipe"],
          env: { ...process.env, SYSTEMD_COLORS: "0", NO_COLOR: "1" },
        },
      );
      let stdout = "", stderr = "";
      child.stdout!.setEncoding("utf8").on("data", (s: string) => stdout += s);
      child.stderr!.setEncoding("utf8").on("data", (s: string) => stderr += s);
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(
          new Error(
            `${command} ${args.join(" ")}: not done in ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** `systemctl ARGS…`; its stdout, or an error with its output if it failed. */
  async systemctl(...args: string[]): Promise<string> {
    const result = await this.run("systemctl", args);
    if (result.code !== 0) {
      throw new Error(
        `systemctl ${
          args.join(" ")
        } exited with ${result.code}: ${result.stderr.trim()}${result.stdout.trim()}`,
      );
    }
    return result.stdout;
  }

  /** Properties of `unit` (`systemctl show -p …`), by name. */
  async show(
    unit: string,
    ...properties: string[]
  ): Promise<Record<string, string>> {
    const text = await this.systemctl(
      "show",
      unit,
      ...properties.flatMap((p) => ["-p", p]),
    );
    return Object.fromEntries(
      text.split("\n").filter((line) => line.includes("=")).map((line) => {
        const at = line.indexOf("=");
        return [line.slice(0, at), line.slice(at + 1)];
      }),
    );
  }

  /** The journal's messages, of `unit` only when given, one per line. */
  async journal(unit?: string): Promise<string> {
    const result = await this.run("journalctl", [
      "--no-pager",
      "-o",
      "cat",
      ...(unit ? ["-u", unit] : []),
    ]);
    return result.stdout;
  }

  /** Writes (or replaces) a unit file and makes systemd reload its units. */
  async installUnit(name: string, text: string): Promise<void> {
    writeFileSync(join(this.tmp, "units", name), text);
    await this.systemctl("daemon-reload");
  }

  /** The file at `path` as the namespaces see it (their `/run`, `/proc`). */
  readFile(path: string): string {
    return readFileSync(`/proc/${this.#pid}/root${path}`, "utf8");
  }

  /** Whether process `pid` (as the namespaces number it) runs and is no zombie. */
  alive(pid: number): boolean {
    try {
      const stat = this.readFile(`/proc/${pid}/stat`);
      const state = stat[stat.lastIndexOf(")") + 2];
      return state !== "Z";
    } catch {
      return false;
    }
  }

  /** The last lines PID 1 wrote to its console. */
  console(lines = 40): string {
    try {
      return readFileSync(join(this.tmp, "console.log"), "utf8")
        .split("\n").slice(-lines).join("\n");
    } catch {
      return "(no console output)";
    }
  }

  /**
   * Tears it down: `systemctl exit` (units stop as at shutdown), `SIGKILL`
   * of PID 1 if that takes over 15 s; then removes the cgroup and the
   * temporary folder and resolves with what was left on the machine
   * (processes of its pid namespace, mounts, cgroups, files changed under
   * `/etc`, `/run` or `/var`): empty when nothing was.
   */
  close(): Promise<string[]> {
    this.#closed ??= this.#teardown();
    return this.#closed;
  }

  /** Tears it down and throws if anything was left on the machine. */
  async [Symbol.asyncDispose](): Promise<void> {
    const left = await this.close();
    if (left.length > 0) {
      throw new Error(`systemd left behind: ${left.join("; ")}`);
    }
  }

  async #teardown(): Promise<string[]> {
    const started = now();
    const left: string[] = [];
    if (this.#pid && this.alive(1)) {
      await this.run("systemctl", ["--no-block", "exit"], 5_000).catch(
        () => {},
      );
    }
    if (!await within(this.#exited, 15_000)) {
      left.push("PID 1 had not exited 15 s after systemctl exit (killed)");
      // Killing PID 1 ends every process of its pid namespace.
      const unshare = childrenOf(this.#wrapper.pid!)[0];
      const pid1 = this.#pid || (unshare && childrenOf(unshare)[0]);
      if (pid1) killQuietly(pid1);
      if (!await within(this.#exited, 5_000)) {
        for (const pid of [unshare, this.#wrapper.pid]) {
          if (pid) killQuietly(pid);
        }
        await within(this.#exited, 5_000);
      }
    }
    if (this.#pidNamespace) {
      const inside = () => processesIn(this.#pidNamespace);
      await poll(() => inside().length === 0, "", Date.now() + 5_000).catch(
        () => {},
      );
      for (const pid of inside()) {
        left.push(`process ${pid} of its pid namespace (killed)`);
        killQuietly(pid);
      }
    }
    const cgroups = await removeCgroup(this.#cgroup);
    if (cgroups.length > 0) left.push(`cgroups ${cgroups.join(", ")}`);
    rmSync(this.tmp, { recursive: true, force: true });
    left.push(...changesSince(this.#before));
    this.teardownMs = now() - started;
    return left;
  }
}

/**
 * The mount point of the machine's cgroup2 hierarchy (`/sys/fs/cgroup` on a
 * unified machine, `/sys/fs/cgroup/unified` beside v1 hierarchies).
 */
function cgroup2Root(): string | undefined {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n")
    .map((line) => line.split(" "))
    .filter((f) => f[f.indexOf("-") + 1] === "cgroup2")
    .map((f) => f[4]);
  return mounts.find((m) => m === "/sys/fs/cgroup") ??
    mounts.find((m) => m.startsWith("/sys/fs/cgroup/"));
}

/**
 * Runs as the future PID 1, in its new pid and mount namespaces: joins the
 * cgroup `$CG`, enters a cgroup namespace rooted there (stage 2), makes the
 * private mounts and execs systemd. `$T` is the test's folder, `$R` the
 * checkout. Every mount is `-n`: util-linux would otherwise record it under
 * the machine's `/run/mount` before `/run` is private.
 */
const INIT_SCRIPT = `set -eu
case "$1" in
stage1)
  echo 0 > "$CG/cgroup.procs"
  exec unshare --cgroup /bin/sh "$0" stage2 ;;
stage2)
  console=$(tty)
  umount -n -R /sys/fs/cgroup
  mount -n -o remount,bind,ro /sys
  mount -n -t cgroup2 cgroup2 /sys/fs/cgroup
  mount -n --bind /proc/sys /proc/sys
  mount -n -o remount,bind,ro /proc/sys
  mount -n -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
  dev=/run/tableroll-dev
  mkdir $dev
  mount -n -t tmpfs -o mode=755,nosuid tmpfs $dev
  mknod -m 666 $dev/null c 1 3
  mknod -m 666 $dev/zero c 1 5
  mknod -m 666 $dev/full c 1 7
  mknod -m 666 $dev/random c 1 8
  mknod -m 666 $dev/urandom c 1 9
  mknod -m 666 $dev/tty c 5 0
  mkdir $dev/pts $dev/shm
  mount -n -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $dev/pts
  ln -s pts/ptmx $dev/ptmx
  mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs $dev/shm
  ln -s /proc/self/fd $dev/fd
  ln -s /proc/self/fd/0 $dev/stdin
  ln -s /proc/self/fd/1 $dev/stdout
  ln -s /proc/self/fd/2 $dev/stderr
  touch $dev/console
  mount -n --bind "$console" $dev/console
  mount -n --move $dev /dev
  rmdir $dev
  mkdir "$T/etc-upper" "$T/etc-work"
  mount -n -t overlay overlay -o "lowerdir=/etc/systemd,upperdir=$T/etc-upper,workdir=$T/etc-work" /etc/systemd
  mount -n -t tmpfs -o mode=755 tmpfs /etc/systemd/system
  mkdir -p /run/systemd/journald.conf.d
  printf '[Journal]\\nStorage=volatile\\n' > /run/systemd/journald.conf.d/volatile.conf
  # A private /tmp and /var/tmp that still show, at their paths, the test's
  # folder and the checkout the units run from (a clone may live there).
  mkdir /run/tableroll-keep
  n=0
  for kept in "$T" "$R"; do
    case "$kept" in /tmp/*|/var/tmp/*) ;; *) continue ;; esac
    n=$((n + 1))
    mkdir /run/tableroll-keep/$n
    mount -n --bind "$kept" /run/tableroll-keep/$n
  done
  mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
  mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
  n=0
  for kept in "$T" "$R"; do
    case "$kept" in /tmp/*|/var/tmp/*) ;; *) continue ;; esac
    n=$((n + 1))
    mkdir -p "$kept"
    mount -n --move /run/tableroll-keep/$n "$kept"
    rmdir /run/tableroll-keep/$n
  done
  rmdir /run/tableroll-keep
  exec setpriv --bounding-set -sys_module,-sys_time env -i container=tableroll \\
    SYSTEMD_UNIT_PATH="$T/units:/etc/systemd/system" \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \\
    ${SYSTEMD} --system --log-level=debug --unit=tableroll.target ;;
esac
`;

/**
 * The units every boot has: stand-ins for the targets systemd and default
 * dependencies expect, the exit path of `systemctl exit`, and journald
 * (a copy of the stock unit without the audit socket, which would open the
 * machine's audit netlink).
 */
function baseUnits(): Record<string, string> {
  const standIn = (what: string, extra = "") =>
    `[Unit]\nDescription=${what} (stand-in)\nDefaultDependencies=no\n${extra}`;
  const journald = readFileSync(
    join(STOCK_UNITS, "systemd-journald.service"),
    "utf8",
  ).replace(/^(Sockets=.*) systemd-journald-audit\.socket/m, "$1");
  return {
    "tableroll.target": standIn(
      "tests",
      "Requires=sysinit.target basic.target sockets.target\n" +
        "After=sysinit.target basic.target sockets.target\n",
    ),
    "sysinit.target": standIn("sysinit", "Wants=systemd-journald.service\n"),
    "basic.target": standIn("basic"),
    "sockets.target": standIn("sockets"),
    "shutdown.target": standIn("shutdown"),
    "umount.target": standIn("umount"),
    "final.target": standIn("final"),
    "exit.target": standIn(
      "exit",
      "Requires=systemd-exit.service\nAfter=systemd-exit.service\n",
    ),
    // Units with default dependencies conflict with shutdown.target: they
    // stop before systemd exits.
    "systemd-exit.service": standIn(
      "exit",
      "Requires=shutdown.target umount.target final.target\n" +
        "After=shutdown.target umount.target final.target\n" +
        "SuccessAction=exit-force\n",
    ),
    "systemd-journald.service": journald,
    "systemd-journald.socket": readFileSync(
      join(STOCK_UNITS, "systemd-journald.socket"),
      "utf8",
    ),
    "systemd-journald-dev-log.socket": readFileSync(
      join(STOCK_UNITS, "systemd-journald-dev-log.socket"),
      "utf8",
    ),
  };
}

/** The machine as far as a leak would show: mounts and watched trees. */
interface HostSnapshot {
  mounts: Set<string>;
  files: Map<string, string>;
}

function snapshotHost(): HostSnapshot {
  const files = new Map<string, string>();
  for (const tree of WATCHED_TREES) walk(tree, files);
  return { mounts: mountTable(), files };
}

/** What differs from `before`: mounts added, files added, changed or removed. */
function changesSince(before: HostSnapshot): string[] {
  const after = snapshotHost();
  const changes = [...after.mounts].filter((m) => !before.mounts.has(m))
    .map((m) => `mount ${m}`);
  for (const [path, stat] of after.files) {
    const old = before.files.get(path);
    if (old === undefined) changes.push(`${path} created`);
    else if (old !== stat) changes.push(`${path} changed`);
  }
  for (const path of before.files.keys()) {
    if (!after.files.has(path)) changes.push(`${path} removed`);
  }
  return changes;
}

/** Mount points with their source and type, as this mount namespace has them. */
function mountTable(): Set<string> {
  return new Set(
    readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter(Boolean)
      .map((line) => {
        const f = line.split(" ");
        const rest = f.slice(f.indexOf("-") + 1);
        return `${f[4]} (${rest[0]} ${rest[1]})`;
      }),
  );
}

/** Records every path below `path` with its type, mode, size and times. */
function walk(path: string, into: Map<string, string>): void {
  let stat;
  try {
    stat = lstatSync(path);
  } catch {
    return;
  }
  into.set(
    path,
    `${stat.mode} ${stat.size} ${stat.mtimeMs} ${stat.ctimeMs} ${stat.uid}:${stat.gid}`,
  );
  if (!stat.isDirectory()) return;
  let names: string[];
  try {
    names = readdirSync(path);
  } catch {
    return;
  }
  for (const name of names) walk(join(path, name), into);
}

/** Removes `dir` and the cgroups below it; resolves with those it could not. */
async function removeCgroup(dir: string): Promise<string[]> {
  const below = (d: string): string[] => {
    try {
      return readdirSync(d, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .flatMap((e) => [...below(join(d, e.name)), join(d, e.name)]);
    } catch {
      return [];
    }
  };
  const deadline = Date.now() + 5_000;
  for (;;) {
    const left = [...below(dir), dir].filter((d) => {
      try {
        rmdirSync(d);
        return false;
      } catch (err) {
        return (err as { code?: string }).code !== "ENOENT";
      }
    });
    // A cgroup whose last process is still exiting is busy for a moment.
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(50);
  }
}

/** The pids of this machine whose pid namespace is `namespace` (`pid:[inode]`). */
function processesIn(namespace: string): number[] {
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).filter((n) => {
    try {
      return readlinkSync(`/proc/${n}/ns/pid`) === namespace;
    } catch {
      return false;
    }
  }).map(Number);
}

/** The children of `pid`. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim()
      .split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Whether `promise` settles within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `condition` every 20 ms until it gives a value; fails at `deadline`. */
async function poll<T>(
  condition: () => T | undefined | false,
  what: string,
  deadline: number,
): Promise<T> {
  for (;;) {
    const value = condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`no ${what} in time`);
    await sleep(20);
  }
}
