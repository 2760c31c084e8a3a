import type { SessionSlots } from "./connection-budget.js";

/** How a worker's budget talks to the supervisor that holds the limit. */
export interface LeaseChannel {
  /** Asks for more slots for `key`; the answer arrives as granted(). */
  need(key: string): void;
  /** Gives `n` unused slots of `key` back. */
  giveBack(key: string, n: number): void;
}

/**
 * One worker's share of a limit that holds across every worker process
 * (limits.maxConnections, a listener's maxConnections). The supervisor owns
 * the limit and leases slots to workers in chunks; a worker admits from its
 * lease without asking anyone, asks only when its lease is used up, and gives
 * back what it has not used when it holds more than it needs. The supervisor
 * never leases more than the limit in total, so never more sessions than the
 * limit are admitted; and it takes unused slots back from the other workers
 * before it refuses one, so no client is refused while the total is below it.
 */
export class LeasedBudget implements SessionSlots {
  private used = 0;
  /** Slots leased to this worker. */
  private leased = 0;
  private readonly waiting: Array<(ok: boolean) => void> = [];
  private asking = false;
  /** Unused slots kept when sessions close; more are given back. */
  private keep = 1;

  constructor(
    private readonly key: string,
    public max: number,
    private readonly channel: LeaseChannel,
  ) {}

  tryAcquire(): boolean {
    if (this.max === 0 || this.used < this.leased) {
      this.used += 1;
      return true;
    }
    return false;
  }

  acquire(): Promise<boolean> {
    if (this.tryAcquire()) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      if (!this.asking) {
        this.asking = true;
        this.channel.need(this.key);
      }
    });
  }

  release(): void {
    this.used -= 1;
    const spare = this.leased - this.used;
    if (this.max > 0 && spare > 2 * this.keep) {
      const back = spare - this.keep;
      this.leased -= back;
      this.channel.giveBack(this.key, back);
    }
  }

  get inUse(): number {
    return this.used;
  }

  /** The supervisor's answer to need(): `n` more slots (0: the limit is reached everywhere). */
  granted(n: number): void {
    this.asking = false;
    this.leased += n;
    while (this.waiting.length > 0 && this.used < this.leased) {
      this.used += 1;
      this.waiting.shift()?.(true);
    }
    if (this.waiting.length === 0) return;
    if (n === 0) {
      for (const resolve of this.waiting.splice(0)) resolve(false);
      return;
    }
    this.asking = true;
    this.channel.need(this.key);
  }

  /** The supervisor takes back every unused slot (another worker needs one); returns how many. */
  revoke(): number {
    const spare = Math.max(0, this.leased - this.used);
    this.leased -= spare;
    return spare;
  }

  /** A new limit (start or reload) and how many unused slots to keep. */
  setLimit(max: number, keep: number): void {
    this.max = max;
    this.keep = Math.max(1, keep);
    if (max === 0) {
      // No limit: whoever waited is admitted.
      for (const resolve of this.waiting.splice(0)) {
        this.used += 1;
        resolve(true);
      }
      this.asking = false;
    }
  }
}
