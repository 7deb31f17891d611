/**
 * Child processes that are tracked by pid and always cleaned up: a
 * {@linkcode ProcessGroup} spawns them, watches their stdout line by line,
 * keeps the tail of their stderr, and kills every one still running when it
 * is closed or when the driver gets SIGINT or SIGTERM.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { now } from "./clock.ts";

/** How a child ended. */
export interface Exit {
  /** Exit status, or `null` when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** When it ended, on the `now()` clock. */
  at: number;
}

/** A line a child printed on stdout, with the moment it arrived. */
export interface Line {
  /** The text without the line break. */
  text: string;
  /** When it arrived, on the `now()` clock. */
  at: number;
}

const STDERR_TAIL_LINES = 20;

/** A spawned child process. */
export class Child {
  /** Its process id. */
  readonly pid: number;
  /** When it was spawned, on the `now()` clock. */
  readonly startedAt: number;
  /** Resolves when it has ended. */
  readonly exited: Promise<Exit>;
  /** Set once it has ended. */
  exit: Exit | undefined;
  readonly #lines: Line[] = [];
  readonly #waiters = new Set<(line: Line) => void>();
  readonly #stderr: string[] = [];

  /** Wraps a freshly spawned `ChildProcess` (use {@linkcode ProcessGroup.spawn}). */
  constructor(child: ChildProcess) {
    this.pid = child.pid!;
    this.startedAt = now();
    splitLines(child.stdout!, (text) => {
      const line = { text, at: now() };
      this.#lines.push(line);
      for (const waiter of this.#waiters) waiter(line);
    });
    splitLines(child.stderr!, (text) => {
      this.#stderr.push(text);
      if (this.#stderr.length > STDERR_TAIL_LINES) this.#stderr.shift();
    });
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this.exit = { code, signal, at: now() };
        resolve(this.exit);
      });
    });
  }

  /** Everything it wrote to stdout so far. */
  get output(): string {
    return this.#lines.map((line) => `${line.text}\n`).join("");
  }

  /** The last lines it wrote to stderr. */
  get stderrTail(): string {
    return this.#stderr.join("\n");
  }

  /**
   * Resolves with the first stdout line matching `pattern` (also one printed
   * before the call); rejects if the child exits first or `timeoutMs` passes.
   */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<Line> {
    const seen = this.#lines.find((line) => pattern.test(line.text));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(onLine);
      };
      const onLine = (line: Line) => {
        if (!pattern.test(line.text)) return;
        done();
        resolve(line);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          this.#failure(`no line matching ${pattern} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.#waiters.add(onLine);
      this.exited.then((exit) => {
        if (!this.#waiters.has(onLine)) return;
        done();
        reject(this.#failure(
          `exited (${
            exit.signal ?? `status ${exit.code}`
          }) before printing a line matching ${pattern}`,
        ));
      });
    });
  }

  /** Sends `signal` unless it has already ended. */
  kill(signal: NodeJS.Signals = "SIGTERM"): void {
    if (this.exit) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // It ended between the check and the signal.
    }
  }

  #failure(what: string): Error {
    const tail = this.stderrTail;
    return new Error(
      `process ${this.pid} ${what}${
        tail ? `; its stderr ends with:\n${tail}` : ""
      }`,
    );
  }
}

/** Spawns children and guarantees that none outlives {@linkcode ProcessGroup.close}. */
export class ProcessGroup {
  readonly #children = new Set<Child>();

  /**
   * Spawns `command args` with stdout and stderr piped, stdin closed; throws
   * if the program cannot be started.
   */
  spawn(
    command: string,
    args: string[],
    env: Record<string, string> = {},
  ): Child {
    const spawned = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1", ...env },
    });
    // A failed start shows as a missing pid (thrown below); without a
    // listener the same failure would also be thrown asynchronously.
    spawned.on("error", () => {});
    if (spawned.pid === undefined) throw new Error(`cannot start ${command}`);
    const child = new Child(spawned);
    this.#children.add(child);
    child.exited.then(() => this.#children.delete(child));
    return child;
  }

  /**
   * Makes SIGINT and SIGTERM of this process stop every child, run
   * `cleanUp` once they are gone (e.g. restore the terminal, remove files)
   * and exit with 130 or 143. An uncaught error does the same after printing
   * it, and exits with 1: no child outlives a crash of the driver either.
   */
  closeOnSignals(cleanUp: () => void = () => {}): void {
    const exitWith = async (status: number) => {
      await this.close();
      cleanUp();
      process.exit(status);
    };
    process.on("SIGINT", () => exitWith(130));
    process.on("SIGTERM", () => exitWith(143));
    const crash = (err: unknown) => {
      console.error(err);
      exitWith(1);
    };
    process.on("uncaughtException", crash);
    process.on("unhandledRejection", crash);
  }

  /**
   * Sends SIGTERM to every child still running, SIGKILL to those still there
   * after `graceMs`, and resolves when all have ended. The group can spawn
   * again afterwards.
   */
  async close(graceMs = 3000): Promise<void> {
    const running = [...this.#children];
    for (const child of running) child.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const child of running) child.kill("SIGKILL");
    }, graceMs);
    await Promise.all(running.map((child) => child.exited));
    clearTimeout(timer);
  }
}

function splitLines(
  stream: NodeJS.ReadableStream,
  onLine: (line: string) => void,
): void {
  let rest = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const part of parts) onLine(part.replace(/\r$/, ""));
  });
  stream.on("end", () => {
    if (rest) onLine(rest);
  });
}
