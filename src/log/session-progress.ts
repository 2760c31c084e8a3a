// The `session progress` log lines (log.progressInterval): for sessions that
// last hours or days, one line per interval with what they have moved so far
// and what the kernel knows of both legs. A timer walks the sessions; nothing
// is done per chunk.

import type { Logger } from "pino";
import type { KernelReader, SessionView } from "../admin/connections.js";

/** Ticks per interval: a session's lines come at most a tenth of the interval late. */
const TICKS_PER_INTERVAL = 10;
/** The tick is never shorter than this (ms): the walk then costs little even with 2 s intervals. */
const MIN_TICK_MS = 100;
/** ...and never longer than this: a 1h interval is still honoured to the minute. */
const MAX_TICK_MS = 60_000;
/** Sessions walked per turn of the event loop: with tens of thousands of sessions, the walk yields. */
const WALK_STEP = 2_000;

/**
 * Writes a `session progress` line for every session each time its age
 * passes another multiple of the interval (at 1×, 2×, …), so each line
 * comes about one interval after the previous one whatever the tick phase.
 * How many lines a session has had is kept in a WeakMap, so a closed
 * session leaves nothing behind.
 */
export class SessionProgress {
  private intervalMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private walking = false;
  private readonly reported = new WeakMap<SessionView, number>();

  constructor(
    private readonly sessions: () => Iterable<SessionView>,
    private readonly kernel: KernelReader,
    private readonly logger: Logger,
  ) {}

  /** Sets the interval (ms; 0 = off) and restarts the timer; called at start and on every reload. */
  setInterval(intervalMs: number): void {
    if (intervalMs === this.intervalMs) return;
    this.stop();
    this.intervalMs = intervalMs;
    if (intervalMs <= 0) return;
    const tick = Math.min(MAX_TICK_MS, Math.max(MIN_TICK_MS, Math.floor(intervalMs / TICKS_PER_INTERVAL)));
    this.timer = setInterval(() => void this.walk(), tick);
    // The proxy's listeners keep the process alive; this timer alone must not.
    this.timer.unref();
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.intervalMs = 0;
  }

  private async walk(): Promise<void> {
    if (this.walking) return;
    this.walking = true;
    try {
      const now = Date.now();
      let step = 0;
      for (const session of [...this.sessions()]) {
        if (++step % WALK_STEP === 0) await new Promise((resolve) => setImmediate(resolve));
        if (this.intervalMs <= 0) return;
        this.consider(session, now);
      }
    } catch (error) {
      this.logger.error({ err: error }, "session progress walk failed");
    } finally {
      this.walking = false;
    }
  }

  private consider(session: SessionView, now: number): void {
    // Only sessions whose upstream is connected: until then there is nothing to report.
    const upstream = session.upstreamSocket;
    if (upstream === undefined || session.client.destroyed) return;
    const due = Math.floor((now - session.startedAt) / this.intervalMs);
    const done = this.reported.get(session) ?? 0;
    if (due <= done) return;
    this.reported.set(session, due);
    this.logger.info(
      {
        sessionId: session.id,
        listener: session.listener,
        client: session.clientAddress,
        upstream: session.upstreamPeer,
        ageMs: now - session.startedAt,
        bytesFromClient: session.client.bytesRead,
        bytesFromUpstream: upstream.bytesRead,
        legs: { client: this.kernel.tcpInfo(session.client) ?? null, upstream: this.kernel.tcpInfo(upstream) ?? null },
      },
      "session progress",
    );
  }
}
