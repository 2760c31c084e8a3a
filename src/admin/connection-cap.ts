// The admin server's cap on open connections. Without one, idle admin
// connections use up the process's descriptors, and then the proxy's own
// listeners can no longer accept a client.

import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";

/** What the cap reports; the admin metrics and the throttled log line fit it. */
export interface CapEvents {
  /** A new connection was closed at once: every slot held a request in flight or a connection made within the grace time. */
  refused(): void;
  /** An idle connection was closed to make room for a new one. */
  evicted(): void;
}

interface Slot {
  /** Requests in flight on the connection (more than one only with pipelining). */
  busy: number;
  /** performance.now() at accept, or when its last request finished. */
  idleSince: number;
}

/**
 * Holds at most `max` admin connections. A connection beyond that takes the
 * slot of the connection idle the longest (no request in flight), if that one
 * has been idle for at least `graceMs`; otherwise it is refused with a reset.
 * The grace time protects a client that connected and is about to send its
 * request; an idle keep-alive or a connection that never sends anything loses
 * its slot to a newcomer, so a liveness probe gets through while idle
 * connections fill the cap, and still nothing can hold more than `max`.
 */
export class ConnectionCap {
  private readonly slots = new Map<Socket, Slot>();

  constructor(
    private readonly max: number,
    private readonly graceMs: number,
    private readonly events: CapEvents,
  ) {}

  /** Call on the server's `connection` event: admits the socket, or closes it (or an idle one) at once. */
  admit(socket: Socket): void {
    if (this.slots.size >= this.max && !this.evictIdle()) {
      // A reset rather than a FIN: the proxy's side keeps no TIME_WAIT for a refused connection.
      socket.resetAndDestroy();
      this.events.refused();
      return;
    }
    this.slots.set(socket, { busy: 0, idleSince: performance.now() });
    socket.once("close", () => this.slots.delete(socket));
  }

  /** Call when a request arrives on `socket`; returns the call to make when its response is done. */
  requestStarted(socket: Socket): () => void {
    const slot = this.slots.get(socket);
    if (slot === undefined) return () => {};
    slot.busy += 1;
    return () => {
      slot.busy -= 1;
      slot.idleSince = performance.now();
    };
  }

  /** Connections held now. */
  get size(): number {
    return this.slots.size;
  }

  private evictIdle(): boolean {
    const now = performance.now();
    let oldest: [Socket, Slot] | undefined;
    for (const entry of this.slots) {
      const slot = entry[1];
      if (slot.busy > 0 || now - slot.idleSince < this.graceMs) continue;
      if (oldest === undefined || slot.idleSince < oldest[1].idleSince) oldest = entry;
    }
    if (oldest === undefined) return false;
    // Deleted now, not at its close event, so that this newcomer's slot is free at once.
    this.slots.delete(oldest[0]);
    oldest[0].resetAndDestroy();
    this.events.evicted();
    return true;
  }
}
