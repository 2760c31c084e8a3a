/**
 * Says whether a log line for `key` may be written now: at most one per key
 * per interval, so a flood (a denied scanner, a descriptor shortage, a kernel
 * that refuses an option on every socket) costs one line, not one per event.
 * The map is cleared when it grows past maxKeys, so hostile keys (client
 * addresses) cannot grow it without bound.
 */
export class LogThrottle {
  private readonly lastAt = new Map<string, number>();

  constructor(
    private readonly intervalMs: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** True (and the key's clock restarted) when the last line for key is at least one interval old. */
  allow(key: string): boolean {
    const now = this.now();
    const last = this.lastAt.get(key);
    if (last !== undefined && now - last < this.intervalMs) return false;
    if (this.lastAt.size >= this.maxKeys) this.lastAt.clear();
    this.lastAt.set(key, now);
    return true;
  }
}
