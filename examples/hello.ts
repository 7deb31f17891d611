/**
 * The usage example: an HTTP service that can be upgraded without refusing a
 * connection. Start it, then start another copy with the same `--dir`: the
 * new copy takes over the socket, prints `READY <pid>`, and the old copy
 * finishes its in-flight requests, prints `DRAINED <pid>` and exits 0.
 *
 * ```sh
 * deno run -A examples/hello.ts --dir /tmp/hello --addr 127.0.0.1:8080
 * bun examples/hello.ts --dir /tmp/hello --addr 127.0.0.1:8080
 * ```
 *
 * Run it with `--help` for its flags. Under systemd it notifies the service
 * manager (`Type=notify`) and takes the socket named `web` from socket
 * activation: see `examples/systemd/`. The body names the build when one
 * was named at build time (`bun build --compile --define
 * HELLO_VERSION='"2"'`).
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { Upgrader } from "../mod.ts";
import { serve } from "../adapters/serve/mod.ts";
import { useSystemd } from "../systemd/mod.ts";
import { upgradeOnSignal } from "../self_upgrade/mod.ts";

const USAGE = `usage: hello.ts --dir DIR [options]

An HTTP service ("hello from <pid>") that hands its socket to the next copy
started with the same --dir.

  --dir DIR              coordination directory (created 0700 if missing)
  --id ID                this copy's id (default: its pid)
  --name NAME            the listener's name (default: web)
  --addr HOST:PORT       where to listen (default: 127.0.0.1:8080)
  --delay MS             response delay (default: 0)
  --pid-file PATH        the owner's pid, for a service manager
  --upgrade-on-sighup    on SIGHUP, start a new copy of the program, which
                         takes over and prints its own READY <pid>
  --rollback-window MS   stay on standby that long after a takeover, and
                         serve again (ROLLED-BACK <pid>) if the new copy dies
  -h, --help             this text

It prints READY <pid> once it owns the socket and DRAINED <pid> once it has
drained after a takeover (or after SIGTERM or SIGINT), then exits 0.`;

let parsed;
try {
  parsed = parseArgs({
    options: {
      dir: { type: "string" },
      id: { type: "string" },
      name: { type: "string", default: "web" },
      addr: { type: "string", default: "127.0.0.1:8080" },
      delay: { type: "string", default: "0" },
      "pid-file": { type: "string" },
      "upgrade-on-sighup": { type: "boolean", default: false },
      "rollback-window": { type: "string", default: "0" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
} catch (err) {
  console.error(`hello.ts: ${(err as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
const flags = parsed.values;
if (flags.help) {
  console.log(USAGE);
  process.exit(0);
}
const [, hostname, port] = flags.addr!.match(/^\[?(.*?)\]?:(\d+)$/) ?? [];
if (!flags.dir || port === undefined) {
  console.error(USAGE);
  process.exit(2);
}
const delay = Number(flags.delay);
const pid = process.pid;
// Replaced by `bun build --define HELLO_VERSION=…`; undeclared otherwise.
declare const HELLO_VERSION: string | undefined;
const version = typeof HELLO_VERSION === "string" ? HELLO_VERSION : undefined;
const body = `hello from ${pid}${version ? ` (version ${version})` : ""}\n`;

// stdout carries only the READY/DRAINED lines; the upgrader reports on stderr.
const logger = {
  debug: () => {},
  info: console.error,
  warn: console.error,
  error: console.error,
};
mkdirSync(flags.dir, { recursive: true, mode: 0o700 });
const upgrader = await Upgrader.create(flags.dir, {
  id: flags.id,
  logger,
  rollbackWindow: Number(flags["rollback-window"]),
});
useSystemd(upgrader, { pidFile: flags["pid-file"] });
// The running runtime's native server (Deno.serve or Bun.serve) on the
// handed-over socket; after a takeover it drains by itself, and accepts
// again if the successor dies within the rollback window.
const server = await serve({
  upgrader,
  name: flags.name!,
  hostname,
  port: Number(port),
  async handler() {
    await new Promise((resolve) => setTimeout(resolve, delay));
    return new Response(body);
  },
  onListen() {},
});
if (flags["upgrade-on-sighup"]) upgradeOnSignal(upgrader);
// Listening before READY is printed: a signal right after it is handled.
const stop = async () => {
  await server.stop();
  await upgrader.stop(); // ends the takeovers below, and a rollback window
};
const stopOnSignal = () => stop().catch(console.error);
process.once("SIGINT", stopOnSignal);
process.once("SIGTERM", stopOnSignal);
await upgrader.ready();
console.log(`READY ${pid}`);

for await (const step of upgrader.takeovers()) {
  if (step === "rolled-back") console.log(`ROLLED-BACK ${pid}`);
  if (step === "final") break;
}
await server.finished;
console.log(`DRAINED ${pid}`);
await upgrader.stop();
process.exit(0);
