// Reports the admin connection cap's refusals: every one in the metrics, and
// at most one log line per interval, so that a flood of connections cannot
// flood the log as well.

import type { Logger } from "pino";
import type { CapEvents } from "./connection-cap.js";

/** The admin connection counters; ProxyMetrics' adminConnections fits it. */
export interface AdminConnectionCounters {
  readonly refused: { inc(): void };
  readonly evicted: { inc(): void };
}

/**
 * Counts each refusal and eviction at once, and logs `admin connection cap
 * reached` at warn with what happened since the previous line: at once for
 * the first, then at most once per `intervalMs`. A timer writes the counts a
 * burst left over when its interval ends; close() writes what is pending.
 */
export class RefusalReport implements CapEvents {
  private refusedSince = 0;
  private evictedSince = 0;
  private lastLineAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly counters: AdminConnectionCounters | undefined,
    private readonly logger: Logger,
    private readonly maxConnections: number,
    private readonly intervalMs: number,
  ) {}

  refused(): void {
    this.counters?.refused.inc();
    this.refusedSince += 1;
    this.report();
  }

  evicted(): void {
    this.counters?.evicted.inc();
    this.evictedSince += 1;
    this.report();
  }

  /** Writes what is pending and stops the timer. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
  }

  private report(): void {
    const wait = this.lastLineAt + this.intervalMs - Date.now();
    if (wait <= 0) {
      this.flush();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, wait);
      // A pending log line must not keep the process alive.
      this.timer.unref();
    }
  }

  private flush(): void {
    if (this.refusedSince === 0 && this.evictedSince === 0) return;
    this.logger.warn(
      { refused: this.refusedSince, evicted: this.evictedSince, maxConnections: this.maxConnections, intervalMs: this.intervalMs },
      "admin connection cap reached",
    );
    this.refusedSince = 0;
    this.evictedSince = 0;
    this.lastLineAt = Date.now();
  }
}
