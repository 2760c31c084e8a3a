import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { AdminServer } from "./admin/admin-server.js";
import { listenerSettings } from "./config/settings.js";
import type { Config } from "./config/schema.js";
import { loadLibc, type Libc } from "./net/libc.js";
import { SocketOptions } from "./net/socket-options.js";
import { CloseReason } from "./proxy/close-reason.js";
import { ConnectionBudget } from "./proxy/connection-budget.js";
import { StartupError, StartupErrorCode } from "./proxy/errors.js";
import { combineHooks, type ProxyHooks, type SessionSummary } from "./proxy/hooks.js";
import { type ListenerSettings, ProxyListener } from "./proxy/listener.js";
import type { Session } from "./proxy/session.js";
import { ProxyMetrics } from "./metrics/proxy-metrics.js";
import { formatHostPort } from "./util/host-port.js";

/** What the composition root is given; everything else it builds. */
export interface ProxyDeps {
  readonly logger: Logger;
  /** Replaceable for tests; loaded from the system otherwise. */
  readonly libc?: Libc;
  /** Extra observers (tests, metrics). */
  readonly hooks?: ProxyHooks;
}

/** Outcome of a reload, for logs and the reloads metric. */
export interface ReloadOutcome {
  readonly started: string[];
  readonly updated: string[];
  readonly stopped: string[];
}

/**
 * A running proxy: its listeners, their sessions, and the ways to reload and
 * stop it. Built by startProxy; owns no global state.
 */
export class KeepaliveProxy {
  /** Listeners accepting now, by name. */
  readonly listeners = new Map<string, ProxyListener>();
  /** Listeners that stopped accepting (reload, shutdown) but still carry sessions. */
  private readonly retired = new Set<ProxyListener>();
  private readonly idPrefix = randomBytes(3).toString("hex");
  private sessionCount = 0;
  /** The process-wide connection limit (limits.maxConnections), shared by every listener. */
  private readonly processBudget: ConnectionBudget;
  private draining = false;
  private readonly hooks: ProxyHooks;
  /** Its metrics, set by startProxy. */
  metrics: ProxyMetrics | undefined;
  /** The admin HTTP server, set by startProxy when config.admin.listen is not null. */
  admin: AdminServer | undefined;

  constructor(
    private config: Config,
    readonly socketOptions: SocketOptions,
    private readonly logger: Logger,
    extraHooks: ProxyHooks | undefined,
  ) {
    this.processBudget = new ConnectionBudget(config.limits.maxConnections);
    const logHook: ProxyHooks = { sessionClosed: (summary) => this.logClosed(summary) };
    this.hooks = combineHooks(logHook, extraHooks ?? {}, { sessionClosed: () => this.pruneRetired() });
  }

  /** The config in force. */
  get currentConfig(): Config {
    return this.config;
  }

  /** True from the moment shutdown begins. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** Every live session, across accepting and retired listeners. */
  *sessions(): Iterable<Session> {
    for (const listener of this.allListeners()) yield* listener.sessions;
  }

  /** Number of live sessions. */
  get sessionTotal(): number {
    let n = 0;
    for (const listener of this.allListeners()) n += listener.sessions.size;
    return n;
  }

  /** Accepting listeners and those retired but still carrying sessions. */
  private *allListeners(): Iterable<ProxyListener> {
    yield* this.listeners.values();
    yield* this.retired;
  }

  /** Starts every listener of the config. On failure, stops those already started and rethrows. */
  async start(): Promise<void> {
    for (const listenerConfig of this.config.listeners) {
      await this.startListener(listenerSettings(listenerConfig));
    }
  }

  /**
   * Applies a new config: new listeners start, removed ones stop accepting
   * while their sessions continue, changed settings apply to new sessions.
   * Never touches a live session. Rejects (running config unchanged) when a
   * new listener cannot bind.
   */
  reload(next: Config): Promise<ReloadOutcome> {
    return this.applyConfig(next).then(
      (outcome) => {
        this.hooks.configReloaded?.("success");
        return outcome;
      },
      (error: unknown) => {
        this.hooks.configReloaded?.("failure");
        throw error;
      },
    );
  }

  /** Counts a reload refused before it reached the proxy (the new config file is invalid). */
  reloadRefused(): void {
    this.hooks.configReloaded?.("failure");
  }

  private async applyConfig(next: Config): Promise<ReloadOutcome> {
    verifySocketOptions(this.socketOptions, next);
    const outcome: ReloadOutcome = { started: [], updated: [], stopped: [] };
    const wanted = new Map(next.listeners.map((l) => [l.name, listenerSettings(l)]));
    const replaced: ProxyListener[] = [];
    const startedNow: ProxyListener[] = [];
    try {
      for (const [name, settings] of wanted) {
        const existing = this.listeners.get(name);
        if (existing && sameBinding(existing.current, settings)) continue;
        const fresh = await this.bind(settings, existing);
        startedNow.push(fresh);
        if (existing) replaced.push(existing);
      }
    } catch (error) {
      for (const listener of startedNow) listener.stopAccepting();
      throw error;
    }
    for (const listener of startedNow) {
      this.listeners.set(listener.name, listener);
      outcome.started.push(listener.name);
    }
    for (const old of replaced) this.retire(old);
    for (const [name, listener] of [...this.listeners]) {
      const settings = wanted.get(name);
      if (!settings) {
        this.retire(listener);
        this.listeners.delete(name);
        outcome.stopped.push(name);
      } else if (!startedNow.includes(listener)) {
        listener.update(settings);
        outcome.updated.push(name);
      }
    }
    this.processBudget.max = next.limits.maxConnections;
    this.config = next;
    return outcome;
  }

  /**
   * Stops accepting at once, lets live sessions finish for up to drainMs, then
   * resets the rest with reason proxy_shutdown.
   */
  async shutdown(drainMs = this.config.shutdown.drainTimeout): Promise<{ drained: number; reset: number }> {
    // First, before any listener closes: /readyz answers 503 from here on.
    this.draining = true;
    const before = this.sessionTotal;
    for (const listener of this.listeners.values()) this.retire(listener);
    this.listeners.clear();
    await this.waitForSessions(drainMs);
    const reset = this.sessionTotal;
    if (reset > 0) {
      this.logger.warn({ sessions: reset, drainTimeoutMs: drainMs }, "drain timeout reached; resetting remaining sessions");
      for (const listener of this.retired) listener.abortAll(CloseReason.ProxyShutdown);
      await this.waitForSessions(2000);
    }
    // Last: /healthz and /metrics answer for as long as sessions drain.
    await this.admin?.close();
    return { drained: before - reset, reset };
  }

  private async startListener(settings: ListenerSettings): Promise<void> {
    const listener = await this.bind(settings, undefined);
    this.listeners.set(settings.name, listener);
  }

  private async bind(settings: ListenerSettings, replacing: ProxyListener | undefined): Promise<ProxyListener> {
    const listener = new ProxyListener(settings, {
      socketOptions: this.socketOptions,
      hooks: this.hooks,
      logger: this.logger,
      nextSessionId: () => `${this.idPrefix}-${(++this.sessionCount).toString(36)}`,
      processBudget: this.processBudget,
      makeBudget: (max) => new ConnectionBudget(max),
    });
    const address = await listener.start();
    this.logger.info(
      {
        listener: settings.name,
        address: address.address,
        port: address.port,
        upstream: settings.upstream.targets.map(formatHostPort),
        replacing: replacing ? formatHostPort(replacing.current.listen) : undefined,
      },
      "listening",
    );
    return listener;
  }

  private retire(listener: ProxyListener): void {
    listener.stopAccepting();
    if (listener.sessions.size > 0) this.retired.add(listener);
    this.logger.info({ listener: listener.name, liveSessions: listener.sessions.size }, "listener stopped accepting");
  }

  private pruneRetired(): void {
    for (const listener of this.retired) if (listener.sessions.size === 0) this.retired.delete(listener);
  }

  private waitForSessions(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = Date.now() + timeoutMs;
      const check = (): void => {
        if (this.sessionTotal === 0 || Date.now() >= deadline) resolve();
        else setTimeout(check, Math.min(50, Math.max(1, deadline - Date.now())));
      };
      check();
    });
  }

  private logClosed(s: SessionSummary): void {
    this.logger.info(
      {
        sessionId: s.sessionId,
        listener: s.listener,
        client: s.client,
        upstream: s.upstream,
        reason: s.reason,
        side: s.side,
        errno: s.errno,
        bytesFromClient: s.bytesFromClient,
        bytesFromUpstream: s.bytesFromUpstream,
        durationMs: s.durationMs,
      },
      "session closed",
    );
  }
}

function sameBinding(a: ListenerSettings, b: ListenerSettings): boolean {
  return a.listen.host === b.listen.host && a.listen.port === b.listen.port;
}

/**
 * Checks every leg's options against the kernel on a throwaway socket, so a
 * refused option stops the proxy at startup with one clear message.
 */
export function verifySocketOptions(socketOptions: SocketOptions, config: Config): void {
  const problems: string[] = [];
  config.listeners.forEach((l, i) => {
    const settings = listenerSettings(l);
    const family = settings.upstream.targets[0]?.host.includes(":") ? 6 : 4;
    for (const [leg, options] of [["client", settings.client], ["upstream", settings.upstreamLeg]] as const) {
      for (const p of socketOptions.verify(options, family)) problems.push(`listeners[${i}].${leg}: ${p}`);
    }
  });
  if (problems.length > 0) {
    throw new StartupError(StartupErrorCode.SocketOptionsRefused, `the kernel refused socket options:\n${problems.join("\n")}`);
  }
}

/** Composition root: checks the kernel, builds the proxy and starts its listeners. */
export async function startProxy(config: Config, deps: ProxyDeps): Promise<KeepaliveProxy> {
  if (process.platform !== "linux") {
    throw new StartupError(StartupErrorCode.Platform, `keepalive-proxy needs Linux (TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT); this is ${process.platform}`);
  }
  const socketOptions = new SocketOptions(deps.libc ?? loadLibc());
  verifySocketOptions(socketOptions, config);
  const metrics = new ProxyMetrics();
  const proxy = new KeepaliveProxy(config, socketOptions, deps.logger, deps.hooks ? combineHooks(metrics.hooks, deps.hooks) : metrics.hooks);
  proxy.metrics = metrics;
  metrics.observe(proxy);
  try {
    await proxy.start();
    if (config.admin.listen !== null) {
      proxy.admin = new AdminServer(
        config.admin.listen,
        { source: proxy, registry: metrics.registry, logger: deps.logger, counters: metrics.adminConnections },
        { maxConnections: config.admin.maxConnections },
      );
      await proxy.admin.start();
    }
  } catch (error) {
    await proxy.shutdown(0);
    throw error;
  }
  return proxy;
}
