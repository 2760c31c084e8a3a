/**
 * The part of AbortSignal that the connect phase's waits use (the PROXY
 * header read, the upstream connect and its backoff, both TLS handshakes). A
 * real AbortSignal fits it, so callers outside the per-session path (the
 * `check` and `discover` commands, tests) pass one; a session passes a
 * CancelSource instead.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/**
 * A one-shot cancellation for one session's connect phase: a plain object
 * with one listener slot. It replaces an AbortController per session, whose
 * AbortSignal is an EventTarget: a profile of the connection-rate benchmark
 * showed each one costing a fresh hidden class (V8 map) besides the
 * EventTarget machinery, on every accepted client. Listeners run once, in
 * the order they were added; one added after the abort is never called
 * (callers check `aborted` first, as with AbortSignal).
 */
export class CancelSource implements CancelSignal {
  aborted = false;
  /** The usual single waiter, without an array. */
  private first: (() => void) | undefined;
  private more: (() => void)[] | undefined;

  addEventListener(_type: "abort", listener: () => void): void {
    if (this.aborted) return;
    if (this.first === undefined) this.first = listener;
    else if (this.more === undefined) this.more = [listener];
    else this.more.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    if (this.first === listener) {
      this.first = this.more?.shift();
      return;
    }
    const i = this.more?.indexOf(listener) ?? -1;
    if (i >= 0) this.more?.splice(i, 1);
  }

  /** Cancels once: every waiter is told, in order; later calls do nothing. */
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const first = this.first;
    const more = this.more;
    this.first = undefined;
    this.more = undefined;
    first?.();
    if (more) for (const listener of more) listener();
  }
}
