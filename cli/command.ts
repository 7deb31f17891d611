/**
 * What every subcommand shares: its flags, its help text, its exit codes,
 * and the parsing of its command line.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { InspectError } from "./inspect.ts";

/** Exit codes of every command, for scripts. */
export const EXIT = {
  /** Done: the owner is live and settled, the upgrade happened, the directory is clean. */
  ok: 0,
  /** The command failed: see stderr. */
  failed: 1,
  /** Wrong command line. */
  usage: 2,
  /** No live owner in the directory. */
  noOwner: 3,
  /** A handover is under way (status), or the upgrade did not finish in time (upgrade). */
  busy: 4,
  /** The owner has not enabled self-upgrade on SIGHUP (upgrade). */
  notEnabled: 5,
} as const;

/** Where a command writes. */
export interface Output {
  /** Results (stdout). */
  out(line: string): void;
  /** Errors and progress (stderr). */
  err(line: string): void;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** One subcommand of `tableroll`. */
export interface Command<O extends Options = Options> {
  /** Its name on the command line. */
  name: string;
  /** One line for the overview. */
  summary: string;
  /** The full `--help` text, usage line first. */
  help: string;
  /** Its flags besides `--help` and `--json`. */
  options: O;
  /** Runs it on the directory with the parsed flags; returns the exit code. */
  run(
    dir: string,
    flags: Record<string, string | boolean | undefined> & { json: boolean },
    output: Output,
  ): number | Promise<number>;
}

/** A command line that cannot be run; its message says why. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Parses `args` for `command`: `--help` prints its help and exits 0, a bad
 * command line prints the problem and its usage and exits 2.
 */
export async function runCommand(
  command: Command,
  args: string[],
  output: Output,
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        ...command.options,
        help: { type: "boolean", short: "h", default: false },
        json: { type: "boolean", default: false },
      },
    });
    if (parsed.values.help) {
      output.out(command.help);
      return EXIT.ok;
    }
    if (parsed.positionals.length !== 1) {
      throw new UsageError(
        `${command.name} takes exactly one directory, got ${parsed.positionals.length}`,
      );
    }
  } catch (err) {
    output.err(`tableroll ${command.name}: ${(err as Error).message}`);
    output.err(command.help.split("\n")[0]);
    return EXIT.usage;
  }
  const flags = parsed.values as
    & Record<string, string | boolean | undefined>
    & {
      json: boolean;
    };
  try {
    return await command.run(parsed.positionals[0], flags, output);
  } catch (err) {
    if (err instanceof InspectError) {
      output.err(`tableroll ${command.name}: ${err.message}`);
      return EXIT.failed;
    }
    if (!(err instanceof UsageError)) throw err;
    output.err(`tableroll ${command.name}: ${err.message}`);
    output.err(command.help.split("\n")[0]);
    return EXIT.usage;
  }
}
