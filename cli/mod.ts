#!/usr/bin/env bun
/**
 * The `tableroll` command line: inspect a coordination directory, clean it,
 * ask its owner to upgrade itself. It reads `/proc` and the directory and
 * never connects to a control socket (that would start a handover), so it is
 * safe to run against a live service, Go tableroll ones included.
 *
 * ```sh
 * deno run -A jsr:@tableroll/tableroll/cli status /run/my-service
 * bunx tableroll status /run/my-service --json
 * ```
 *
 * Linux only (it reads `/proc`).
 *
 * @example Run a command from a program
 * ```ts ignore
 * import { main } from "@tableroll/tableroll/cli";
 *
 * const code = await main(["status", "/run/my-service", "--json"]);
 * ```
 *
 * @module
 */
import process from "node:process";
import { clean } from "./clean.ts";
import { type Command, EXIT, type Output, runCommand } from "./command.ts";
import { status } from "./status.ts";
import { upgrade } from "./upgrade.ts";

export { EXIT } from "./command.ts";
export type { Output } from "./command.ts";

const COMMANDS: Command[] = [status, upgrade, clean];

const HELP = `usage: tableroll COMMAND DIR [options]

Operates on a tableroll coordination directory (Deno, Bun or Go processes).

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(8)} ${c.summary}`).join("\n")}

Run "tableroll COMMAND --help" for a command's options and exit codes.`;

const console_: Output = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
};

/**
 * Runs the command line `args` (without the program name) and returns the
 * exit code; output goes to `output` (stdout and stderr by default).
 */
export async function main(
  args: string[],
  output: Output = console_,
): Promise<number> {
  const [name, ...rest] = args;
  if (
    name === undefined || name === "help" || name === "--help" || name === "-h"
  ) {
    (name === undefined ? output.err : output.out)(HELP);
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    output.err(`tableroll: unknown command ${JSON.stringify(name)}`);
    output.err(HELP);
    return EXIT.usage;
  }
  return await runCommand(command, rest, output);
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
