import type { CancelSignal } from "./cancel-signal.js";

/** How a bounded wait ends when its own outcome does not come first. */
export interface WaitBounds<T> {
  /** ms; 0 = no timeout. */
  readonly timeoutMs: number;
  readonly signal: CancelSignal;
  readonly onTimeout: () => T;
  readonly onAbort: () => T;
}

/**
 * The one shape of every wait in the connect phase (PROXY header, TCP
 * connect, TLS handshakes): it ends once, with its own outcome, its timeout or
 * its signal, whichever comes first. Returns `finish`; the first call clears
 * the timer and the abort listener and hands the outcome to `done`, later
 * calls do nothing. The caller checks `signal.aborted` before it starts.
 */
export function settleOnce<T>(bounds: WaitBounds<T>, done: (outcome: T) => void): (outcome: T) => void {
  let settled = false;
  const finish = (outcome: T): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    bounds.signal.removeEventListener("abort", onAbort);
    done(outcome);
  };
  const onAbort = (): void => finish(bounds.onAbort());
  const timer = bounds.timeoutMs > 0 ? setTimeout(() => finish(bounds.onTimeout()), bounds.timeoutMs) : undefined;
  bounds.signal.addEventListener("abort", onAbort, { once: true });
  return finish;
}
