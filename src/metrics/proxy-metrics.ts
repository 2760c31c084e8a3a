import type { Socket } from "node:net";
import { collectDefaultMetrics, type Gauge, Registry } from "prom-client";
import type { CloseReason } from "../proxy/session/close-reason.js";
import type { ConnectResult, ProxyHooks, SessionSummary } from "../proxy/hooks.js";
import { type AdminConnectionMetrics, registerAdminMetrics } from "./admin-metrics.js";
import { type BuildInfo, readBuildInfo } from "./build-info.js";
import { type Families, registerFamilies } from "./families.js";
import { registerTlsMetrics } from "./tls-metrics.js";
import { ALL_ACCEPT_ERRNOS, ALL_CLOSE_LABELS, ALL_CONNECT_RESULTS, ALL_DIRECTIONS, ALL_RELOAD_RESULTS, Direction } from "./label-sets.js";

export { METRIC_PREFIX } from "./families.js";

/** A live session as the metrics see it: its listener and its two sockets' byte counters. */
export interface LiveSessionBytes {
  readonly id: string;
  readonly listener: string;
  readonly client: Socket;
  readonly upstreamSocket: Socket | undefined;
}

/** What the metrics read at scrape time; KeepaliveProxy fits it as it is. */
export interface MetricsSource {
  readonly isDraining: boolean;
  readonly currentConfig: { readonly listeners: readonly { readonly name: string }[] };
  readonly listeners: ReadonlyMap<string, { readonly isAccepting: boolean }>;
  sessions(): Iterable<LiveSessionBytes>;
}

export interface ProxyMetricsOptions {
  /** Version and Node version for build_info; read from package.json by default. */
  readonly buildInfo?: BuildInfo;
  /** Register prom-client's process and Node metrics on the same registry (default true). */
  readonly defaultMetrics?: boolean;
}

/** Bytes of one session already added to the bytes counter by a scrape. */
interface Counted {
  fromClient: number;
  fromUpstream: number;
}

/** The label children of one listener, resolved once when the listener is first seen. */
interface ListenerSeries {
  readonly accepted: { inc(): void };
  readonly active: { inc(): void; dec(): void };
  readonly closed: ReadonlyMap<CloseReason, { inc(): void }>;
  readonly attempts: ReadonlyMap<ConnectResult, { inc(): void }>;
  readonly connectDuration: { observe(seconds: number): void };
  readonly sessionDuration: { observe(seconds: number): void };
  readonly bytes: Readonly<Record<Direction, { inc(value: number): void }>>;
}

/**
 * The metrics of one proxy instance, on a Registry of its own (never
 * prom-client's global one, so two proxies in one process, as in tests, do
 * not mix their counts). The proxy feeds it through `hooks`; nothing here runs
 * per chunk of data: sessions are counted when they are accepted, connected
 * and closed, and the bytes of sessions still open are added at scrape time
 * from the sockets' own counters, so `rate()` stays true for sessions that
 * live for days.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  /** Subscribe the proxy with these. Cheap and never throwing, as ProxyHooks requires. */
  readonly hooks: ProxyHooks;
  /** The admin server's connection cap counts its refusals here. */
  readonly adminConnections: AdminConnectionMetrics;

  private source: MetricsSource | undefined;
  private readonly series = new Map<string, ListenerSeries>();
  /**
   * Bytes already counted by scrapes, per live session id. Keyed by id because
   * the close hook gets a summary, not the session; an entry is made by a
   * scrape only for a session that is live, and removed by that session's
   * close, which every session reports exactly once, so the map never holds
   * more than the live sessions.
   */
  private readonly counted = new Map<string, Counted>();

  private readonly families: Families;

  constructor(options: ProxyMetricsOptions = {}) {
    this.families = registerFamilies(this.registry, options.buildInfo ?? readBuildInfo(), {
      countLiveBytes: () => this.countLiveBytes(),
      listenerUp: (gauge) => this.collectListenerUp(gauge),
      isDraining: () => this.source?.isDraining === true,
    });
    for (const result of ALL_RELOAD_RESULTS) this.families.reloads.inc({ result }, 0);
    this.families.workers.set(1);
    this.families.workerRestarts.inc(0);
    this.adminConnections = registerAdminMetrics(this.registry);
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.hooks = {
      clientAccepted: (listener) => {
        const s = this.forListener(listener);
        s.accepted.inc();
        s.active.inc();
      },
      upstreamConnected: (listener, result, durationMs) => {
        const s = this.forListener(listener);
        s.attempts.get(result)?.inc();
        if (result === "ok") s.connectDuration.observe(durationMs / 1000);
      },
      sessionClosed: (summary) => this.onSessionClosed(summary),
      configReloaded: (result) => {
        this.families.reloads.inc({ result });
        // New listeners of the new config show their zero series at once.
        this.createConfiguredListeners();
      },
      acceptFailed: (listener, errno) => {
        this.forListener(listener);
        this.families.acceptErrors.inc({ listener, errno });
      },
      socketOptionFailed: (listener, side, option) => this.families.optionFailures.inc({ listener, side, option }),
      ...registerTlsMetrics(this.registry),
    };
  }

  /**
   * Reads live sessions and listener states from `source` at scrape time,
   * and creates the series of every configured listener at zero now.
   */
  observe(source: MetricsSource): void {
    this.source = source;
    this.createConfiguredListeners();
  }

  /** The scrape body in Prometheus' text format. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** The supervisor's count of live workers. */
  setWorkers(n: number): void {
    this.families.workers.set(n);
  }

  /** The supervisor replaced a worker that died. */
  workerRestarted(): void {
    this.families.workerRestarts.inc();
  }

  private onSessionClosed(summary: SessionSummary): void {
    const s = this.forListener(summary.listener);
    s.closed.get(summary.reason)?.inc();
    s.active.dec();
    s.sessionDuration.observe(summary.durationMs / 1000);
    const seen = this.counted.get(summary.sessionId);
    this.counted.delete(summary.sessionId);
    addBytes(s.bytes[Direction.ClientToUpstream], summary.bytesFromClient - (seen?.fromClient ?? 0));
    addBytes(s.bytes[Direction.UpstreamToClient], summary.bytesFromUpstream - (seen?.fromUpstream ?? 0));
  }

  /** Adds what live sessions read since the last scrape (or since they began). */
  private countLiveBytes(): void {
    if (this.source === undefined) return;
    for (const session of this.source.sessions()) {
      const fromClient = session.client.bytesRead;
      const fromUpstream = session.upstreamSocket?.bytesRead ?? 0;
      let seen = this.counted.get(session.id);
      if (seen === undefined) {
        if (fromClient === 0 && fromUpstream === 0) continue;
        seen = { fromClient: 0, fromUpstream: 0 };
        this.counted.set(session.id, seen);
      }
      const s = this.forListener(session.listener);
      addBytes(s.bytes[Direction.ClientToUpstream], fromClient - seen.fromClient);
      addBytes(s.bytes[Direction.UpstreamToClient], fromUpstream - seen.fromUpstream);
      seen.fromClient = fromClient;
      seen.fromUpstream = fromUpstream;
    }
  }

  private collectListenerUp(gauge: Gauge<"listener">): void {
    if (this.source === undefined) return;
    // Reset first, so a listener removed by a reload drops out of the scrape.
    gauge.reset();
    for (const { name } of this.source.currentConfig.listeners) {
      gauge.set({ listener: name }, this.source.listeners.get(name)?.isAccepting === true ? 1 : 0);
    }
  }

  private createConfiguredListeners(): void {
    for (const { name } of this.source?.currentConfig.listeners ?? []) this.forListener(name);
  }

  /**
   * The children of one listener, created at zero for every closed label set
   * the first time the listener is seen; later calls are one Map lookup.
   */
  private forListener(listener: string): ListenerSeries {
    const existing = this.series.get(listener);
    if (existing !== undefined) return existing;
    const closed = new Map<CloseReason, { inc(): void }>();
    for (const { side, reason } of ALL_CLOSE_LABELS) {
      const labels = { listener, side, reason };
      this.families.closed.inc(labels, 0);
      closed.set(reason, this.families.closed.labels(labels));
    }
    const attempts = new Map<ConnectResult, { inc(): void }>();
    for (const result of ALL_CONNECT_RESULTS) {
      this.families.attempts.inc({ listener, result }, 0);
      attempts.set(result, this.families.attempts.labels({ listener, result }));
    }
    const bytes = {} as Record<Direction, { inc(value: number): void }>;
    for (const direction of ALL_DIRECTIONS) {
      this.families.bytes.inc({ listener, direction }, 0);
      bytes[direction] = this.families.bytes.labels({ listener, direction });
    }
    for (const errno of ALL_ACCEPT_ERRNOS) this.families.acceptErrors.inc({ listener, errno }, 0);
    this.families.accepted.inc({ listener }, 0);
    this.families.active.set({ listener }, 0);
    this.families.connectDuration.zero({ listener });
    this.families.sessionDuration.zero({ listener });
    const series: ListenerSeries = {
      accepted: this.families.accepted.labels({ listener }),
      active: this.families.active.labels({ listener }),
      closed,
      attempts,
      connectDuration: this.families.connectDuration.labels({ listener }),
      sessionDuration: this.families.sessionDuration.labels({ listener }),
      bytes,
    };
    this.series.set(listener, series);
    return series;
  }
}

function addBytes(child: { inc(value: number): void }, delta: number): void {
  // A counter never goes down; a negative delta would only come from a socket
  // counter that was reset, which Node never does, so it is dropped, not thrown.
  if (delta > 0) child.inc(delta);
}
