/**
 * Waiting for an upgrader's takeover in tests.
 *
 * @module
 */
import type { Upgrader } from "../../mod.ts";

/**
 * Resolves once a successor took `upgrader` over (its `takeovers()` yield
 * `upgraded`, also for a takeover before the call); rejects if it stops
 * first.
 */
export async function takenOver(upgrader: Upgrader): Promise<void> {
  for await (const step of upgrader.takeovers()) {
    if (step === "upgraded") return;
  }
  throw new Error("the upgrader stopped before a successor took over");
}
