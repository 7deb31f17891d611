/**
 * What an upgrader tells the application: typed events for metrics and
 * audit logs, and the same facts as structured log records.
 *
 * Events arrive through a callback option (`onEvent`) rather than an
 * `EventTarget`: `inherited` happens inside `Upgrader.create()`, before the
 * caller holds an object to add a listener to; a discriminated union narrows
 * by `event.type` without casts, where `EventTarget` would need
 * `CustomEvent` detail casts; and it is how `Deno.serve` and `Bun.serve`
 * report (`onListen`, `onError`). One function can fan out to several
 * consumers.
 *
 * @module
 */
import type { Logger } from "./logger.ts";

/** What every event carries. */
export interface EventBase {
  /** When it happened, in milliseconds since the epoch. */
  time: number;
  /** The id of the upgrader that reports it. */
  id: string;
}

/** This process received its predecessor's descriptors (inside `Upgrader.create()`). */
export interface InheritedEvent extends EventBase {
  /** The event's kind. */
  type: "inherited";
  /** The predecessor's id. */
  from: string;
  /** How many descriptors it handed over. */
  count: number;
  /** Milliseconds from connecting to the predecessor to holding every descriptor. */
  durationMs: number;
}

/** This process became the owner (`ready()` completed). */
export interface ReadyEvent extends EventBase {
  /** The event's kind. */
  type: "ready";
  /** The predecessor that stepped down, or `null` when there was none. */
  predecessor: string | null;
  /** Milliseconds from the start of `Upgrader.create()` to now. */
  durationMs: number;
}

/** A successor connected: the handover begins. */
export interface HandoverStartedEvent extends EventBase {
  /** The event's kind. */
  type: "handover-started";
  /** The successor's pid. */
  successorPid: number;
}

/** The handover failed; this process is still the owner. */
export interface HandoverFailedEvent extends EventBase {
  /** The event's kind. */
  type: "handover-failed";
  /** The successor's pid. */
  successorPid: number;
  /** Why, in words. */
  reason: string;
  /** The error behind it. */
  error: unknown;
  /** Milliseconds from `handover-started` to the failure. */
  durationMs: number;
}

/** A successor took over: this process drains and should exit. */
export interface UpgradedEvent extends EventBase {
  /** The event's kind. */
  type: "upgraded";
  /** The successor's pid. */
  successorPid: number;
  /** Milliseconds from `handover-started` to the successor's ready. */
  durationMs: number;
}

/**
 * A successor that had taken over died within the rollback window while
 * still the recorded owner: this process took the service back and serves
 * again (`upgrader.rolledBack` resolves too).
 */
export interface RolledBackEvent extends EventBase {
  /** The event's kind. */
  type: "rolled-back";
  /** The successor's pid. */
  successorPid: number;
  /** Milliseconds from the successor's takeover (`upgraded`) to now. */
  durationMs: number;
}

/** `stop()` ran. */
export interface StoppedEvent extends EventBase {
  /** The event's kind. */
  type: "stopped";
  /** The state it stopped from. */
  from: string;
}

/** An adapter's server began to drain after a handover. */
export interface DrainStartedEvent extends EventBase {
  /** The event's kind. */
  type: "drain-started";
  /** The name of the listener the server served. */
  name: string;
  /** Connections open when the drain began; `null` where the runtime does not count them (`Deno.serve`). */
  connections: number | null;
}

/** An adapter's server finished draining. */
export interface DrainFinishedEvent extends EventBase {
  /** The event's kind. */
  type: "drain-finished";
  /** The name of the listener the server served. */
  name: string;
  /** Connections still open at the end (0 when all finished); `null` where the runtime does not count them. */
  connections: number | null;
  /** Milliseconds from `drain-started`. */
  durationMs: number;
}

/**
 * An adapter's server stopped accepting: the runtime's accept loop ended on
 * an error (`EMFILE` at the descriptor limit, say). The connections it has
 * are still served; the adapter accepts again once it can.
 */
export interface AcceptFailedEvent extends EventBase {
  /** The event's kind. */
  type: "accept-failed";
  /** The name of the listener. */
  name: string;
  /** What ended the accept loop. */
  error: unknown;
}

/** An adapter's server accepts again after `accept-failed`. */
export interface AcceptResumedEvent extends EventBase {
  /** The event's kind. */
  type: "accept-resumed";
  /** The name of the listener. */
  name: string;
  /** Milliseconds from `accept-failed`. */
  durationMs: number;
  /** Adoptions of the listener into a new server tried meanwhile, the one that accepts included. */
  attempts: number;
}

/** Every event an upgrader and its adapters report, told apart by `type`. */
export type UpgraderEvent =
  | InheritedEvent
  | ReadyEvent
  | HandoverStartedEvent
  | HandoverFailedEvent
  | UpgradedEvent
  | RolledBackEvent
  | StoppedEvent
  | DrainStartedEvent
  | DrainFinishedEvent
  | AcceptFailedEvent
  | AcceptResumedEvent;

/** Receives an upgrader's events. It runs synchronously; what it throws is logged, not raised. */
export type UpgraderEventListener = (event: UpgraderEvent) => void;

/** An event as the emitter takes it: `time` and `id` are added. */
export type EventInput = UpgraderEvent extends infer E
  ? E extends UpgraderEvent ? Omit<E, "time" | "id"> : never
  : never;

const LEVELS: Record<UpgraderEvent["type"], keyof Logger> = {
  inherited: "info",
  ready: "info",
  "handover-started": "info",
  "handover-failed": "warn",
  upgraded: "info",
  // Loud: the new version died and the old one serves again.
  "rolled-back": "error",
  stopped: "debug",
  "drain-started": "info",
  "drain-finished": "info",
  // New connections wait in the kernel's queue until it accepts again.
  "accept-failed": "error",
  "accept-resumed": "info",
};

/**
 * Sends each event to the listener and, as a structured record (a message
 * and a data object, what `@std/log` handlers receive as `msg` and `args`),
 * to the logger.
 */
export class EventReporter {
  readonly #id: string;
  readonly #logger: Logger;
  readonly #listener: UpgraderEventListener | undefined;

  /** Reports for upgrader `id`. */
  constructor(id: string, logger: Logger, listener?: UpgraderEventListener) {
    this.#id = id;
    this.#logger = logger;
    this.#listener = listener;
  }

  /** Logs `message` as a warning that is no event. */
  warn(message: string): void {
    this.#logger.warn(message);
  }

  /** Reports `input` with `message` as the log line. */
  emit(input: EventInput, message: string): void {
    const event = { ...input, time: Date.now(), id: this.#id } as UpgraderEvent;
    this.#logger[LEVELS[event.type]](`tableroll: ${message}`, logData(event));
    if (!this.#listener) return;
    try {
      this.#listener(event);
    } catch (err) {
      this.#logger.error(
        `tableroll: the onEvent listener threw on ${event.type}: ${
          (err as Error)?.message ?? err
        }; fix the listener`,
        { event: event.type, error: err },
      );
    }
  }
}

/** The data object of an event's log record: the event, its kind as `event`. */
function logData(event: UpgraderEvent): Record<string, unknown> {
  const { type, ...rest } = event;
  return { event: type, ...rest };
}

const reporters = new WeakMap<object, EventReporter>();

/** Lets the adapters report through `upgrader`'s reporter (see {@linkcode reporterOf}). */
export function registerReporter(
  upgrader: object,
  reporter: EventReporter,
): void {
  reporters.set(upgrader, reporter);
}

/** The reporter of `upgrader`, for the adapters' drain events; `undefined` for a stand-in. */
export function reporterOf(upgrader: object): EventReporter | undefined {
  return reporters.get(upgrader);
}
