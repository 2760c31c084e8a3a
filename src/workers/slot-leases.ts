import type { Config } from "../config/schema.js";
import type { SlotLimits } from "./protocol.js";

/** What the lease keeper asks of the workers. */
export interface LeaseWorkers {
  /** The workers alive now, by slot. */
  slots(): readonly number[];
  grant(slot: number, key: string, n: number): void;
  /** Takes every unused slot of `key` back from a worker; resolves with how many it gave (0 if it did not answer). */
  revoke(slot: number, key: string): Promise<number>;
}

/** The limits that hold across workers: the process's, and each listener's. */
export function slotLimits(config: Config, workers: number): SlotLimits {
  const entry = (max: number) => ({ max, keep: chunkOf(max, workers) });
  const limits: Record<string, { max: number; keep: number }> = { process: entry(config.limits.maxConnections) };
  for (const l of config.listeners) limits[`listener:${l.name}`] = entry(l.maxConnections);
  return limits;
}

/** Slots leased at a time: a quarter of a fair share, at least one. */
function chunkOf(max: number, workers: number): number {
  return Math.max(1, Math.floor(max / (Math.max(1, workers) * 4)));
}

/**
 * The supervisor's side of LeasedBudget: it holds each limit and leases slots
 * to workers in chunks, never more than the limit in total. When a worker
 * asks and nothing is free, it first takes back the unused slots of every
 * other worker, and refuses (grants 0) only if the limit is still all used:
 * no client is refused while the total is below the limit. Requests for one
 * key are answered one at a time, so two revoke rounds never cross.
 */
export class SlotLeases {
  private limits: SlotLimits = {};
  private readonly leased = new Map<string, Map<number, number>>();
  private readonly queues = new Map<string, Promise<void>>();

  constructor(private readonly workers: LeaseWorkers) {}

  /** New limits (start, reload); slots leased beyond a lowered limit are taken back. */
  setLimits(limits: SlotLimits): void {
    this.limits = limits;
    for (const [key, { max }] of Object.entries(limits)) {
      if (max > 0 && this.total(key) > max) void this.serially(key, () => this.revokeAll(key, undefined));
    }
  }

  /** A worker ran out of slots of `key`. */
  need(slot: number, key: string): void {
    void this.serially(key, async () => {
      const max = this.limits[key]?.max ?? 0;
      if (max === 0) {
        this.workers.grant(slot, key, 1);
        return;
      }
      if (this.total(key) >= max) await this.revokeAll(key, slot);
      const n = Math.min(this.limits[key]?.keep ?? 1, Math.max(0, max - this.total(key)));
      this.add(key, slot, n);
      this.workers.grant(slot, key, n);
    });
  }

  /** A worker gave `n` unused slots back. */
  returned(slot: number, key: string, n: number): void {
    this.add(key, slot, -n);
  }

  /** A worker is gone: its sessions went with it, and so did its lease. */
  forget(slot: number): void {
    for (const bySlot of this.leased.values()) bySlot.delete(slot);
  }

  private async revokeAll(key: string, except: number | undefined): Promise<void> {
    const others = this.workers.slots().filter((s) => s !== except);
    const back = await Promise.all(others.map((s) => this.workers.revoke(s, key)));
    others.forEach((s, i) => {
      this.add(key, s, -(back[i] ?? 0));
    });
  }

  private total(key: string): number {
    let sum = 0;
    for (const n of this.leased.get(key)?.values() ?? []) sum += n;
    return sum;
  }

  private add(key: string, slot: number, n: number): void {
    let bySlot = this.leased.get(key);
    if (bySlot === undefined) {
      bySlot = new Map();
      this.leased.set(key, bySlot);
    }
    bySlot.set(slot, Math.max(0, (bySlot.get(slot) ?? 0) + n));
  }

  private serially(key: string, work: () => Promise<void>): Promise<void> {
    const next = (this.queues.get(key) ?? Promise.resolve()).then(work, work);
    this.queues.set(key, next);
    return next;
  }
}
