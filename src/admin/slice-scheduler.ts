// Admin work that grows with the number of sessions runs here, in slices,
// one slice per turn of the event loop, so that forwarding never waits for
// more than one slice, however many requests ask for such work at once.

import { performance } from "node:perf_hooks";

/** One slice of work: run synchronously until `deadline` (performance.now() ms) or until done. */
export type Slice<T> = (deadline: number) => T;

interface Queued {
  readonly slice: Slice<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Runs queued slices first come, first served, one at a time, and after each
 * one rests `restFactor` times as long as it ran before the next, so admin
 * work gets at most 1 / (1 + restFactor) of the event loop and forwarding the
 * rest. The rest is a timer, so the process may sleep in epoll meanwhile: on
 * a host short of CPU, a process that mostly sleeps is woken promptly for its
 * sockets, where one that is always busy waits for its turn. Two requests'
 * slices alternate rather than run back to back, so the stall stays one slice
 * long instead of growing with the number of requests.
 */
export class SliceScheduler {
  private readonly queue: Queued[] = [];
  private pending = false;
  /** performance.now() before which the next slice does not start. */
  private restUntil = 0;

  /**
   * `budgetMs`: how long each slice may run, ms. `restFactor`: after a slice,
   * the scheduler rests this many times as long as the slice ran, so the
   * work takes at most 1 / (1 + restFactor) of the process's time.
   */
  constructor(
    readonly budgetMs: number,
    readonly restFactor: number,
  ) {}

  /** Queues a slice; resolves with its result (or rejects with what it threw) once it has run. */
  run<T>(slice: Slice<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ slice, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.pending || this.queue.length === 0) return;
    this.pending = true;
    const rest = this.restUntil - performance.now();
    // setImmediate when no rest is owed: it runs after the poll phase, so
    // sockets ready now still move their bytes before the next slice.
    if (rest > 0) setTimeout(() => this.runNext(), rest);
    else setImmediate(() => this.runNext());
  }

  private runNext(): void {
    this.pending = false;
    const next = this.queue.shift();
    if (next !== undefined) {
      const started = performance.now();
      try {
        next.resolve(next.slice(started + this.budgetMs));
      } catch (error) {
        next.reject(error);
      }
      const ended = performance.now();
      this.restUntil = ended + this.restFactor * (ended - started);
    }
    this.schedule();
  }
}
