/**
 * What an upgrader reports to the integrations that follow its life (service
 * manager notification, PID file, self-upgrade).
 *
 * @module
 */

/** Called by the upgrader as its state changes; every method is optional. */
export interface LifecycleHooks {
  /** `ready()` is about to ask the predecessor (`pid`) to step down. */
  claimingOwnership?(predecessor: number): void;
  /** The predecessor (`pid`) did not step down: it stays the owner. */
  claimFailed?(predecessor: number): void;
  /** This process has just become the owner. */
  becameOwner?(): void;
  /** A successor (`pid`) connected: the handover begins. */
  handingOver?(pid: number): void;
  /** The handover to `pid` failed; this process is still the owner. */
  handoverFailed?(pid: number, reason: unknown): void;
  /** `pid` took over; this process drains. */
  handedOver?(pid: number): void;
  /** `stop()` ran; `wasOwner` says whether this process owned the sockets until then. */
  stopped?(wasOwner: boolean): void;
}

/** Calls `event` on every hook that has it; a throwing hook is reported, not propagated. */
export function emit<E extends keyof LifecycleHooks>(
  hooks: readonly LifecycleHooks[],
  event: E,
  args: Parameters<NonNullable<LifecycleHooks[E]>>,
  onError: (err: unknown) => void,
): void {
  for (const hook of hooks) {
    try {
      (hook[event] as ((...a: unknown[]) => void) | undefined)?.call(
        hook,
        ...args,
      );
    } catch (err) {
      onError(err);
    }
  }
}
