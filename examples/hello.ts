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
 * Flags: `--dir DIR` (created 0700 if missing), `--id ID` (default: pid),
 * `--name NAME` (default `web`), `--addr HOST:PORT` (default
 * `127.0.0.1:8080`), `--delay MS` (response delay, default 0),
 * `--pid-file PATH` (the owner's pid, for a service manager),
 * `--upgrade-on-sighup` (on `SIGHUP`, start a new copy of the program, which
 * takes over and prints its own `READY <pid>` to the same stdout),
 * `--rollback-window MS` (default 0: none). With a window, a copy that was
 * taken over stays on standby that long; if the new copy dies meanwhile, the
 * old one serves again and prints `ROLLED-BACK <pid>` instead of draining
 * and exiting.
 *
 * Under systemd it notifies the service manager (`Type=notify`) and takes
 * the socket named `web` from socket activation: see `examples/systemd/`.
 * The body names the build when one was named at build time
 * (`bun build --compile --define HELLO_VERSION='"2"'`).
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import { upgradeOnSignal, Upgrader } from "../mod.ts";
import { serve } from "../adapters/serve/mod.ts";

const { values: flags } = parseArgs({
  options: {
    dir: { type: "string" },
    id: { type: "string" },
    name: { type: "string", default: "web" },
    addr: { type: "string", default: "127.0.0.1:8080" },
    delay: { type: "string", default: "0" },
    "pid-file": { type: "string" },
    "upgrade-on-sighup": { type: "boolean", default: false },
    "rollback-window": { type: "string", default: "0" },
  },
});
if (!flags.dir) {
  console.error(
    "usage: hello.ts --dir DIR [--id ID] [--name NAME] [--addr HOST:PORT] [--delay MS]" +
      " [--pid-file PATH] [--upgrade-on-sighup] [--rollback-window MS]",
  );
  process.exit(2);
}
const [, hostname, port] = flags.addr!.match(/^\[?(.*?)\]?:(\d+)$/) ?? [];
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
  pidFile: flags["pid-file"],
  rollbackWindow: Number(flags["rollback-window"]),
});
// The running runtime's native server (Deno.serve or Bun.serve) on the
// handed-over socket.
const server = serve({
  upgrader,
  name: flags.name,
  hostname,
  port: Number(port),
  async handler() {
    await new Promise((resolve) => setTimeout(resolve, delay));
    return new Response(body);
  },
  onListen() {},
});

if (flags["upgrade-on-sighup"]) upgradeOnSignal(upgrader, { logger });
// Listening before READY is printed: a signal right after it is handled.
const stopRequested = new Promise<"stop">((resolve) => {
  process.once("SIGINT", () => resolve("stop"));
  process.once("SIGTERM", () => resolve("stop"));
});
await upgrader.ready();
console.log(`READY ${pid}`);

// After a takeover the adapter drains by itself, and accepts again if the
// successor dies within the rollback window; on a signal, stop serving.
for (;;) {
  const upgraded = upgrader.upgradeComplete.then(() => "upgraded" as const);
  if (await Promise.race([upgraded, stopRequested]) === "stop") {
    await server.stop();
    break;
  }
  const outcome = await Promise.race([
    server.finished.then(() => "drained" as const),
    upgrader.rolledBack.then(() => "rolled-back" as const),
    stopRequested,
  ]);
  // Stopping the upgrader ends the window at once.
  if (outcome === "stop") await upgrader.stop();
  if (outcome !== "rolled-back") break;
  console.log(`ROLLED-BACK ${pid}`);
}
await server.finished;
console.log(`DRAINED ${pid}`);
await upgrader.stop();
process.exit(0);
