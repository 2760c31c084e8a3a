/**
 * Session slots against a maximum: one budget per listener and one for the
 * process; a session holds a slot from accept to close. `tryAcquire` answers
 * at once from what this process holds; a budget shared with other worker
 * processes (LeasedBudget) can also `acquire` more from the supervisor when it
 * has none left, which is the only time an accept waits.
 */
export interface SessionSlots {
  /** Takes a slot this process holds, or returns false. */
  tryAcquire(): boolean;
  /** Asks for a slot beyond what this process holds (shared budgets only); resolves false when the limit is reached everywhere. */
  acquire?(): Promise<boolean>;
  release(): void;
  /** The limit; 0 = none. */
  max: number;
  readonly inUse: number;
}

/** A budget of this process alone (a single-process proxy, or tests). */
export class ConnectionBudget implements SessionSlots {
  private used = 0;

  constructor(public max: number) {}

  /** Takes a slot, or returns false when the budget is spent. */
  tryAcquire(): boolean {
    if (this.max > 0 && this.used >= this.max) return false;
    this.used += 1;
    return true;
  }

  release(): void {
    this.used -= 1;
  }

  get inUse(): number {
    return this.used;
  }
}
