/**
 * A count of live sessions against a maximum (0 = none). One per listener
 * and one for the process; a session holds a slot from accept to close.
 */
export class ConnectionBudget {
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
