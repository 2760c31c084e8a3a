// What /status.json and the status page at / show beyond /connections: per
// listener its address, upstream health, and counts of accepted and closed
// sessions; and the last closed sessions, in a bounded ring.

import type { SessionSummary } from "../proxy/hooks.js";
import { type ConnectionsSource, type ListOptions, listConnections, type SliceRunner } from "./connections.js";

/** One upstream address as the listener's pool judges it now. */
export interface UpstreamStatus {
  readonly address: string;
  /** ok: no recent failure; failing: failed connects below the threshold; cooldown: skipped until `cooldownUntil`. */
  readonly state: "ok" | "failing" | "cooldown";
  readonly consecutiveFailures: number;
  readonly cooldownUntil: string | null;
}

/** Closes by reason: all since start, and in about the last five minutes. */
export interface CloseCounts {
  readonly total: Readonly<Record<string, number>>;
  readonly last5m: Readonly<Record<string, number>>;
}

/** One listener. */
export interface ListenerStatus {
  readonly name: string;
  /** `ip:port` bound, null when not bound. */
  readonly address: string | null;
  readonly accepting: boolean;
  /** Worker processes serving it (1 in a single process). */
  readonly workers: number;
  readonly upstreams: UpstreamStatus[];
  readonly active: number;
  readonly accepted: number;
  readonly closes: CloseCounts;
}

/** One closed session, as its `session closed` line told it. */
export interface ClosedSessionView {
  readonly id: string;
  readonly listener: string;
  readonly client: string;
  readonly upstream: string | null;
  readonly reason: string;
  readonly side: string;
  readonly errno: string | null;
  readonly closedAt: string;
  readonly durationMs: number;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  /** The worker that held it; absent in a single process. */
  readonly worker?: number;
}

/** The parts of /status.json that are not the sessions listing. */
export interface StatusSnapshot {
  readonly draining: boolean;
  readonly listeners: ListenerStatus[];
  /** Newest first, at most CLOSED_RING_SIZE. */
  readonly closed: ClosedSessionView[];
}

/** Where /status.json reads from; KeepaliveProxy fits it as it is. */
export interface StatusSource extends ConnectionsSource {
  statusSnapshot(): StatusSnapshot;
}

/** Closed sessions kept for the page: a fixed ring, so memory does not grow with traffic. */
export const CLOSED_RING_SIZE = 200;
/** Sessions /status.json lists when the request has no `limit`. */
export const DEFAULT_STATUS_LIMIT = 1_000;
/** The "last 5 minutes" window: BUCKETS buckets of BUCKET_MS, the current one included. */
const BUCKET_MS = 10_000;
const BUCKETS = 30;

interface Bucket {
  slot: number;
  readonly counts: Map<string, number>;
}

/** One listener's counts. */
class ListenerCounts {
  accepted = 0;
  readonly total = new Map<string, number>();
  private readonly buckets: Bucket[] = Array.from({ length: BUCKETS }, () => ({ slot: -1, counts: new Map() }));

  closed(reason: string, now: number): void {
    this.total.set(reason, (this.total.get(reason) ?? 0) + 1);
    const slot = Math.floor(now / BUCKET_MS);
    const bucket = this.buckets[slot % BUCKETS] as Bucket;
    if (bucket.slot !== slot) {
      bucket.slot = slot;
      bucket.counts.clear();
    }
    bucket.counts.set(reason, (bucket.counts.get(reason) ?? 0) + 1);
  }

  recent(now: number): Record<string, number> {
    const current = Math.floor(now / BUCKET_MS);
    const sum: Record<string, number> = {};
    for (const bucket of this.buckets) {
      if (bucket.slot <= current - BUCKETS) continue;
      for (const [reason, n] of bucket.counts) sum[reason] = (sum[reason] ?? 0) + n;
    }
    return sum;
  }
}

/**
 * Counts accepted and closed sessions per listener and keeps the last
 * CLOSED_RING_SIZE closed sessions. Fed by two hooks (once per session, never
 * per chunk); its memory is bounded by the number of listener names.
 */
export class StatusBook {
  private readonly counts = new Map<string, ListenerCounts>();
  private readonly ring: (ClosedSessionView | undefined)[] = new Array(CLOSED_RING_SIZE);
  private next = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** The hooks that feed it. */
  readonly hooks = {
    clientAccepted: (listener: string): void => {
      this.of(listener).accepted += 1;
    },
    sessionClosed: (s: SessionSummary): void => this.closed(s),
  };

  private of(listener: string): ListenerCounts {
    let c = this.counts.get(listener);
    if (c === undefined) {
      c = new ListenerCounts();
      this.counts.set(listener, c);
    }
    return c;
  }

  private closed(s: SessionSummary): void {
    const now = this.now();
    this.of(s.listener).closed(s.reason, now);
    this.ring[this.next] = {
      id: s.sessionId,
      listener: s.listener,
      client: s.client,
      upstream: s.upstream ?? null,
      reason: s.reason,
      side: s.side,
      errno: s.errno ?? null,
      closedAt: new Date(now).toISOString(),
      durationMs: s.durationMs,
      bytesFromClient: s.bytesFromClient,
      bytesFromUpstream: s.bytesFromUpstream,
    };
    this.next = (this.next + 1) % CLOSED_RING_SIZE;
  }

  /** Accepted and closes of one listener. */
  countsOf(listener: string): { accepted: number; closes: CloseCounts } {
    const c = this.counts.get(listener);
    if (c === undefined) return { accepted: 0, closes: { total: {}, last5m: {} } };
    return { accepted: c.accepted, closes: { total: Object.fromEntries(c.total), last5m: c.recent(this.now()) } };
  }

  /** The closed sessions kept, newest first. */
  recentlyClosed(): ClosedSessionView[] {
    const out: ClosedSessionView[] = [];
    for (let i = 1; i <= CLOSED_RING_SIZE; i++) {
      const entry = this.ring[(this.next - i + CLOSED_RING_SIZE) % CLOSED_RING_SIZE];
      if (entry === undefined) break;
      out.push(entry);
    }
    return out;
  }
}

/**
 * The /status.json body as JSON text in pieces: the snapshot, then the
 * sessions listing (listConnections, in slices), so a large listing never
 * holds the event loop.
 */
export async function* statusReport(source: StatusSource, options: ListOptions, slices: SliceRunner): AsyncGenerator<string, unknown> {
  const snapshot = source.statusSnapshot();
  const head = JSON.stringify({ generatedAt: new Date().toISOString(), ...snapshot });
  yield `${head.slice(0, -1)},"sessions":`;
  const listing = listConnections(source, options, slices);
  let summary: unknown;
  for (;;) {
    const piece = await listing.next();
    if (piece.done === true) {
      summary = piece.value;
      break;
    }
    // The listing ends its text with a newline; inside this object it must not.
    yield piece.value.endsWith("\n") ? piece.value.slice(0, -1) : piece.value;
  }
  yield "}\n";
  return summary;
}

/** What an upstream pool knows of one address: UpstreamPool's health records fit it. */
export interface AddressHealth {
  readonly failures: number;
  /** Date.now() ms until which the address is in cool-down; 0 or past = not. */
  readonly downUntil: number;
}

/**
 * The status of each configured upstream and of each resolved address the
 * pool has seen fail: configured targets first (an IP target matches its
 * health record; a name shows `ok` and its failing addresses follow it).
 */
export function upstreamStatuses(targets: readonly string[], health: Iterable<readonly [string, AddressHealth]>, now: number): UpstreamStatus[] {
  const records = new Map(health);
  const view = (address: string, h: AddressHealth | undefined): UpstreamStatus => {
    const cooling = h !== undefined && h.downUntil > now;
    return {
      address,
      state: cooling ? "cooldown" : h !== undefined && h.failures > 0 ? "failing" : "ok",
      consecutiveFailures: h?.failures ?? 0,
      cooldownUntil: cooling ? new Date(h.downUntil).toISOString() : null,
    };
  };
  const out = targets.map((t) => view(t, records.get(t)));
  for (const [address, h] of records) if (!targets.includes(address)) out.push(view(address, h));
  return out;
}
