// An append-only record of what a child process reported (peer events, proxy
// log lines), with waits that poll it: each new entry is checked against the
// pending predicates, so a wait ends the moment its observable appears.

interface Waiter<T> {
  readonly pred: (item: T) => boolean;
  readonly resolve: (item: T) => void;
  readonly reject: (err: Error) => void;
}

/** Entries in arrival order, plus waits on them. */
export class EventLog<T> {
  readonly items: T[] = [];
  readonly #waiters = new Set<Waiter<T>>();
  readonly #describe: () => string;
  #ended: Error | undefined;

  /** `describe` renders recent context (stderr, last entries) for failure messages. */
  constructor(describe: () => string) {
    this.#describe = describe;
  }

  /** Records an entry and wakes the waits it satisfies. */
  push(item: T): void {
    this.items.push(item);
    for (const w of this.#waiters) {
      if (w.pred(item)) {
        this.#waiters.delete(w);
        w.resolve(item);
      }
    }
  }

  /** No entry can come any more (the process exited): pending and later waits fail with `err`. */
  end(err: Error): void {
    this.#ended = err;
    for (const w of this.#waiters) w.reject(err);
    this.#waiters.clear();
  }

  /** The first entry (from index `from` on) matching `pred`, or undefined. */
  find(pred: (item: T) => boolean, from = 0): T | undefined {
    return this.items.slice(from).find(pred);
  }

  /**
   * Resolves with the first entry (from index `from` on) that matches, already
   * recorded or still to come; rejects after `timeoutMs` naming `what`.
   */
  waitFor(pred: (item: T) => boolean, timeoutMs: number, what: string, from = 0): Promise<T> {
    const found = this.find(pred, from);
    if (found !== undefined) return Promise.resolve(found);
    if (this.#ended !== undefined) return Promise.reject(new Error(`waiting for ${what}: ${this.#ended.message}`));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.#describe()}`));
      }, timeoutMs);
      const waiter: Waiter<T> = {
        pred,
        resolve: (item) => {
          clearTimeout(timer);
          resolve(item);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(new Error(`waiting for ${what}: ${err.message}`));
        },
      };
      this.#waiters.add(waiter);
    });
  }

  /**
   * Resolves once `ms` have passed with no matching entry (from index `from`
   * on); rejects as soon as one appears. For scenarios whose claim is that
   * nothing happens for a while.
   */
  async expectNone(pred: (item: T) => boolean, ms: number, what: string, from = 0): Promise<void> {
    const seen = this.find(pred, from);
    if (seen !== undefined) throw new Error(`expected no ${what}, got ${JSON.stringify(seen)}\n${this.#describe()}`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        if (this.#ended !== undefined) reject(new Error(`while expecting no ${what}: ${this.#ended.message}`));
        else resolve();
      }, ms);
      const waiter: Waiter<T> = {
        pred,
        resolve: (item) => {
          clearTimeout(timer);
          reject(new Error(`expected no ${what} for ${ms} ms, got ${JSON.stringify(item)}\n${this.#describe()}`));
        },
        // The process ending is not a matching entry: keep waiting out the period.
        reject: () => undefined,
      };
      this.#waiters.add(waiter);
    });
  }
}

/** The last `n` entries as JSON lines, for failure messages. */
export function tail(items: readonly unknown[], n = 15): string {
  return items
    .slice(-n)
    .map((i) => JSON.stringify(i))
    .join("\n");
}
