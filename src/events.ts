/**
 * What an upgrader tells the application and the integrations around it:
 * typed events, the same facts as structured log records, and the rule for
 * work the library does in the background.
 *
 * Events arrive through a callback option (`onEvent`) rather than an
 * `EventTarget`: `inherited` happens inside `Upgrader.create()`, before the
 * caller holds an object to add a listener to; a discriminated union narrows
 * by `event.type` without casts; and it is how `Deno.serve` and `Bun.serve`
 * report (`onListen`, `onError`). The library's own integrations (the
 * adapters, systemd, self-upgrade) follow an upgrader through the same
 * events (`follow()` in `upgrader.ts`).
 *
 * @module
 */

/**
 * Where the library reports what it does: `console` and an `@std/log`
 * `Logger` both satisfy it. Each event is logged as a message and a data
 * object (what `@std/log` handlers receive as `msg` and `args`).
 */
export interface Logger {
  /** Protocol steps. */
  debug(message: string, ...args: unknown[]): unknown;
  /** Handovers that happened. */
  info(message: string, ...args: unknown[]): unknown;
  /** Failed handovers after which this process keeps serving. */
  warn(message: string, ...args: unknown[]): unknown;
  /** Failures that need attention. */
  error(message: string, ...args: unknown[]): unknown;
}

/**
 * What an upgrader and its adapters report, told apart by `type`; every
 * event also has `time` (milliseconds since the epoch) and `id` (the
 * upgrader's).
 */
export type UpgraderEvent =
  & {
    /** When it happened, in milliseconds since the epoch. */
    time: number;
    /** The id of the upgrader that reports it. */
    id: string;
  }
  & (
    | {
      /** Inside `create()`: the predecessor's descriptors arrived. */
      type: "inherited";
      /** The predecessor's id. */
      from: string;
      /** How many descriptors it handed over. */
      count: number;
      /** Milliseconds from connecting to it to holding every descriptor. */
      durationMs: number;
    }
    | {
      /** Inside `ready()`: the predecessor is asked to step down (a service manager must learn the new main process now). */
      type: "claiming";
      /** The predecessor's id. */
      predecessor: string;
      /** Its pid. */
      predecessorPid: number;
    }
    | {
      /** `ready()` made this process the owner. */
      type: "ready";
      /** The predecessor that stepped down, or `null` when there was none. */
      predecessor: string | null;
      /** Its pid, or `null`. */
      predecessorPid: number | null;
      /** Milliseconds from the start of `create()`. */
      durationMs: number;
    }
    | {
      /** A successor connected: the handover begins. */
      type: "handover-started";
      /** The successor's pid. */
      successorPid: number;
    }
    | {
      /** The handover failed; this process is still the owner. */
      type: "handover-failed";
      /** The successor's pid. */
      successorPid: number;
      /** Why, in words. */
      reason: string;
      /** The error behind it. */
      error: unknown;
      /** Milliseconds from `handover-started`. */
      durationMs: number;
    }
    | {
      /** A successor took over: this process drains and should exit. */
      type: "upgraded";
      /** The successor's pid. */
      successorPid: number;
      /** Milliseconds from `handover-started` to the successor's record. */
      durationMs: number;
    }
    | {
      /** The successor died within the rollback window while still the recorded owner: this process serves again. */
      type: "rolled-back";
      /** The successor's pid. */
      successorPid: number;
      /** Milliseconds from `upgraded`. */
      durationMs: number;
    }
    | {
      /** `stop()` ran. */
      type: "stopped";
      /** The state it stopped from. */
      from: "starting" | "owner" | "handing-over" | "upgraded";
    }
    | {
      /** A self-upgrade started a new copy of the program. */
      type: "upgrade-started";
      /** The copy's pid. */
      pid: number;
    }
    | {
      /** The copy a self-upgrade started did not take over; this process is still the owner. */
      type: "upgrade-failed";
      /** The copy's pid (0 if it could not be started). */
      pid: number;
      /** Why, in words. */
      reason: string;
      /** The error behind it. */
      error: unknown;
    }
    | {
      /** An adapter's server began to drain. */
      type: "drain-started";
      /** The listener's name. */
      name: string;
      /** Connections open then; `null` where the runtime does not count them (`Deno.serve`). */
      connections: number | null;
    }
    | {
      /** An adapter's server finished draining. */
      type: "drain-finished";
      /** The listener's name. */
      name: string;
      /** Connections still open (0 when all finished); `null` where the runtime does not count them. */
      connections: number | null;
      /** Milliseconds from `drain-started`. */
      durationMs: number;
    }
    | {
      /** An adapter's server stopped accepting on an error (`EMFILE` at the descriptor limit); its connections are still served. */
      type: "accept-failed";
      /** The listener's name. */
      name: string;
      /** What ended the accept loop. */
      error: unknown;
    }
    | {
      /** An adapter's server accepts again after `accept-failed`. */
      type: "accept-resumed";
      /** The listener's name. */
      name: string;
      /** Milliseconds from `accept-failed`. */
      durationMs: number;
      /** Servers tried meanwhile, the one that accepts included. */
      attempts: number;
    }
  );

/** An event as it is reported: `time` and `id` are added. */
export type EventInput = UpgraderEvent extends infer E
  ? E extends UpgraderEvent ? Omit<E, "time" | "id"> : never
  : never;

/** Receives events; runs synchronously. */
export type EventListener = (event: UpgraderEvent) => void;

const LEVELS: Record<UpgraderEvent["type"], keyof Logger> = {
  inherited: "info",
  claiming: "debug",
  ready: "info",
  "handover-started": "info",
  "handover-failed": "warn",
  upgraded: "info",
  // Loud: the new version died and the old one serves again.
  "rolled-back": "error",
  stopped: "debug",
  "upgrade-started": "info",
  "upgrade-failed": "error",
  "drain-started": "info",
  "drain-finished": "info",
  // New connections wait in the kernel's queue until it accepts again.
  "accept-failed": "error",
  "accept-resumed": "info",
};

const ignore = () => {};

/** A logger that discards everything (the default, as in Go tableroll). */
export const silentLogger: Logger = {
  debug: ignore,
  info: ignore,
  warn: ignore,
  error: ignore,
};

/**
 * `logger` made safe to call from anywhere in the library: a method that
 * throws, or returns a promise that rejects, is reported once on stderr (the
 * logger itself cannot say it) and otherwise ignored, so a broken logger
 * never interrupts a state change or a handover.
 */
function guardLogger(logger: Logger): Logger {
  let reported = false;
  const report = (err: unknown, message: string) => {
    if (reported) return;
    reported = true;
    console.error(
      `tableroll: the logger failed (${
        describe(err)
      }) on: ${message}; its failures are ignored from now on: fix the logger`,
    );
  };
  const guard =
    (level: keyof Logger) => (message: string, ...args: unknown[]) => {
      try {
        const result = logger[level](message, ...args);
        if (result instanceof Promise) {
          result.catch((err) => report(err, message));
        }
      } catch (err) {
        report(err, message);
      }
    };
  return {
    debug: guard("debug"),
    info: guard("info"),
    warn: guard("warn"),
    error: guard("error"),
  };
}

/**
 * One upgrader's reporting: each event goes to its listeners (the
 * application's `onEvent` first, then the integrations that follow it) and,
 * as a structured record, to the logger. A listener that throws is logged
 * and changes nothing.
 */
export class EventReporter {
  /** The guarded logger: calling it never throws. */
  readonly logger: Logger;
  readonly #id: string;
  readonly #onEvent: EventListener | undefined;
  readonly #listeners: EventListener[] = [];

  /** Reports for upgrader `id` to `logger` and the application's `onEvent`. */
  constructor(id: string, logger?: Logger, onEvent?: EventListener) {
    this.#id = id;
    this.logger = guardLogger(logger ?? silentLogger);
    this.#onEvent = onEvent;
  }

  /** Adds a listener of the library's own; returns the function that removes it. */
  listen(listener: EventListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Reports `input` with `message` as the log line. */
  emit(input: EventInput, message: string): void {
    const event = { ...input, time: Date.now(), id: this.#id } as UpgraderEvent;
    this.logger[LEVELS[event.type]](`tableroll: ${message}`, logData(event));
    if (this.#onEvent) {
      this.#tell(
        this.#onEvent,
        event,
        (type, why) =>
          `tableroll: the onEvent listener threw on ${type}: ${why}; fix the listener`,
      );
    }
    for (const listener of [...this.#listeners]) {
      this.#tell(
        listener,
        event,
        (type, why) => `tableroll: while handling ${type}: ${why}`,
      );
    }
  }

  /** Calls `listener` with `event`; what it throws is logged with `message`. */
  #tell(
    listener: EventListener,
    event: UpgraderEvent,
    message: (type: string, why: string) => string,
  ): void {
    try {
      listener(event);
    } catch (err) {
      this.logger.error(message(event.type, describe(err)), {
        event: event.type,
        error: err,
      });
    }
  }
}

/** The data object of an event's log record: the event, its kind as `event`. */
function logData(event: UpgraderEvent): Record<string, unknown> {
  const { type, ...rest } = event;
  return { event: type, ...rest };
}

/**
 * Runs `task` without awaiting it: the one way the library starts work in
 * the background. Whatever it throws, synchronously or not, is logged with
 * `what` it was doing and handed to `recover`, which puts things in a safe
 * state: nothing started here becomes an unhandled rejection, which would
 * end the service the library lives in.
 *
 * @example
 * ```ts ignore
 * inBackground(logger, "watching pid 4711", () => watch(4711), () => outcome.final.resolve());
 * ```
 */
export function inBackground(
  logger: Logger,
  what: string,
  task: () => Promise<void>,
  recover?: (err: unknown) => void,
): void {
  const failed = (err: unknown) => {
    logger.error(`tableroll: ${what} failed: ${describe(err)}`, {
      error: err,
    });
    try {
      recover?.(err);
    } catch (again) {
      logger.error(
        `tableroll: recovering from the failure of ${what} failed too: ${
          describe(again)
        }; this is a bug in tableroll, please report it`,
        { error: again },
      );
    }
  };
  try {
    task().catch(failed);
  } catch (err) {
    failed(err);
  }
}

/** An error's message, or the value as text. */
export function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
