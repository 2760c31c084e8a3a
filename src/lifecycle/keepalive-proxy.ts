import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { AdminServer } from "../admin/admin-server.js";
import { StatusBook, type StatusSnapshot, upstreamStatuses } from "../admin/status.js";
import { listenerSettings } from "../config/settings.js";
import type { Config } from "../config/schema.js";
import { ListenError } from "../errors.js";
import { SessionProgress } from "../log/session-progress.js";
import { sessionLogHooks } from "../log/session-log.js";
import type { ProxyMetrics } from "../metrics/proxy-metrics.js";
import type { SharedBufferForwarding } from "../net/direct-forwarding.js";
import type { SocketOptions } from "../net/socket-options.js";
import { verifySocketOptions } from "../net/verify-socket-options.js";
import { ConnectionBudget, type SessionSlots } from "../proxy/admission/connection-budget.js";
import { combineHooks, type ProxyHooks, type ReloadResult } from "../proxy/hooks.js";
import { type ListenerSettings, ProxyListener, type SharedListen } from "../proxy/listener.js";
import { CloseReason } from "../proxy/session/close-reason.js";
import type { Session } from "../proxy/session/session.js";
import { formatHostPort } from "../util/host-port.js";
import { ReloadGate, ReloadInterrupted } from "./reload-gate.js";
import { type ReloadOutcome, restartNeededFor } from "./reload-outcome.js";

/** What a worker process shares with the others through its supervisor. */
export interface WorkerContext {
  readonly id: number;
  /** A limit held across every worker (key `process` or `listener:NAME`), leased from the supervisor. */
  budget(key: string, max: number): SessionSlots;
  /** Listening sockets are SO_REUSEPORT sockets of this worker's own. */
  readonly listen: SharedListen;
}

/**
 * The process that carries traffic: its listeners, their sessions, and the
 * ways to reload and drain them. With --workers 1 it is the whole proxy;
 * with more, each worker process runs one, and the supervisor
 * (src/workers/supervisor.ts) holds signals, the admin server and the
 * workers' lifecycle. Built by startProxy (src/main.ts); owns no global state.
 */
export class KeepaliveProxy {
  /** Listeners accepting now, by name. */
  readonly listeners = new Map<string, ProxyListener>();
  /** Listeners that stopped accepting (reload, shutdown) but still carry sessions. */
  private readonly retired = new Set<ProxyListener>();
  private readonly idPrefix = randomBytes(3).toString("hex");
  private sessionCount = 0;
  /** The process-wide connection limit (limits.maxConnections), shared by every listener. */
  private readonly processBudget: SessionSlots;
  private draining = false;
  private readonly gate: ReloadGate;
  private stopping: Promise<{ drained: number; reset: number }> | undefined;
  private readonly hooks: ProxyHooks;
  /** Its metrics, set by startProxy. */
  metrics: ProxyMetrics | undefined;
  /** The admin HTTP server, set by startProxy when config.admin.listen is not null. */
  admin: AdminServer | undefined;
  /** Counts and the closed-sessions ring for /status.json. */
  private readonly book = new StatusBook();
  /** The `session progress` lines (log.progressInterval). */
  private readonly progress: SessionProgress;

  constructor(
    private config: Config,
    readonly socketOptions: SocketOptions,
    private readonly logger: Logger,
    extraHooks: ProxyHooks | undefined,
    private readonly worker?: WorkerContext,
    /** The soft RLIMIT_NOFILE after start-up raised it; it does not change while the proxy runs. */
    private readonly descriptorLimit?: number,
    /** Forwarding through one shared read buffer; undefined: through Node's streams. */
    private readonly directForwarding?: SharedBufferForwarding,
  ) {
    this.processBudget = worker ? worker.budget("process", config.limits.maxConnections) : new ConnectionBudget(config.limits.maxConnections);
    this.hooks = combineHooks(sessionLogHooks(logger, () => this.config.log.sessionOpened), this.book.hooks, extraHooks ?? {}, { sessionClosed: () => this.pruneRetired() });
    this.progress = new SessionProgress(() => this.sessions(), socketOptions, logger);
    this.progress.setInterval(config.log.progressInterval);
    this.gate = new ReloadGate(this, logger);
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
   * Reloads from `load` (which reads the config file and may throw), one
   * reload at a time: a request while one runs is queued, and further
   * requests join the queued one. Refused (counted, one warn line) once a
   * shutdown has begun. Never rejects: whatever goes wrong is logged and
   * counted, and the proxy keeps serving with the config it had.
   */
  requestReload(load: () => Config): Promise<void> {
    return this.gate.request(load);
  }

  /** Counts a reload that never reached reload() (see ReloadGate). */
  countReload(result: ReloadResult): void {
    this.hooks.configReloaded?.(result);
  }

  /**
   * Applies a new config: new listeners start, removed ones stop accepting
   * while their sessions continue, changed settings apply to new sessions.
   * Never touches a live session. Rejects (running config unchanged) when a
   * new listener cannot bind. Callers other than tests use requestReload,
   * which serialises reloads.
   */
  reload(next: Config): Promise<ReloadOutcome> {
    return this.applyConfig(next).then(
      (outcome) => {
        this.hooks.configReloaded?.("success");
        return outcome;
      },
      (error: unknown) => {
        this.hooks.configReloaded?.(error instanceof ReloadInterrupted ? "refused" : "failure");
        throw error;
      },
    );
  }

  private async applyConfig(next: Config): Promise<ReloadOutcome> {
    verifySocketOptions(this.socketOptions, next);
    const outcome: ReloadOutcome = { started: [], updated: [], stopped: [], renamed: [], restartNeededFor: restartNeededFor(this.config, next) };
    const wanted = new Map(next.listeners.map((l) => [l.name, listenerSettings(l)]));
    const replaced: ProxyListener[] = [];
    const startedNow: ProxyListener[] = [];
    const freed: ProxyListener[] = [];
    const renames: Array<[ProxyListener, ListenerSettings]> = [];
    try {
      for (const [name, settings] of wanted) {
        const existing = this.listeners.get(name);
        if (existing && sameBinding(existing.current, settings)) continue;
        // A new name on an address whose old name is gone: the same listener, renamed; its socket stays.
        // (Port 0 asks for a port of its own, so two port-0 listeners are never "the same address".)
        const renamed =
          settings.listen.port === 0
            ? undefined
            : [...this.listeners.values()].find((l) => !wanted.has(l.name) && sameBinding(l.current, settings) && !renames.some(([r]) => r === l));
        if (renamed) {
          renames.push([renamed, settings]);
          continue;
        }
        const fresh = await this.bindFreeing(settings, existing, wanted, freed);
        startedNow.push(fresh);
        if (existing) replaced.push(existing);
        if (this.draining) throw new ReloadInterrupted();
      }
    } catch (error) {
      for (const listener of startedNow) listener.stopAccepting();
      // Listeners closed to free their port for a new one go back to accepting.
      for (const listener of freed) await listener.restart().catch(() => undefined);
      throw error;
    }
    for (const [listener, settings] of renames) {
      outcome.renamed.push(`${listener.name}→${settings.name}`);
      this.listeners.delete(listener.name);
      listener.update(settings);
      this.listeners.set(settings.name, listener);
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
      } else if (!startedNow.includes(listener) && !renames.some(([r]) => r === listener)) {
        listener.update(settings);
        outcome.updated.push(name);
      }
    }
    this.processBudget.max = next.limits.maxConnections;
    this.config = next;
    this.progress.setInterval(next.log.progressInterval);
    return outcome;
  }

  /**
   * Binds a new listener. When its port is held by one of this proxy's own
   * listeners that this reload moves or removes (the same port on another
   * host: Linux refuses a specific address beside a wildcard one), that
   * listener stops accepting first; `freed` records it so a failed reload
   * can bind it again.
   */
  private async bindFreeing(
    settings: ListenerSettings,
    existing: ProxyListener | undefined,
    wanted: ReadonlyMap<string, ListenerSettings>,
    freed: ProxyListener[],
  ): Promise<ProxyListener> {
    try {
      return await this.bind(settings, existing);
    } catch (error) {
      const inUse = error instanceof ListenError && (error.cause as NodeJS.ErrnoException | undefined)?.code === "EADDRINUSE";
      const holder = [...this.listeners.values()].find(
        (l) => l.isAccepting && l.address()?.port === settings.listen.port && (l === existing || !wanted.has(l.name)),
      );
      if (!inUse || holder === undefined) throw error;
      holder.stopAccepting();
      freed.push(holder);
      return await this.bind(settings, existing);
    }
  }

  /**
   * Stops accepting at once, lets live sessions finish for up to drainMs, then
   * resets the rest with reason proxy_shutdown. Waits for a reload in flight
   * first, then stops every listener of every generation. A second call while
   * draining with drainMs 0 (a second signal) resets every session now.
   */
  shutdown(drainMs = this.config.shutdown.drainTimeout): Promise<{ drained: number; reset: number }> {
    if (this.stopping !== undefined) {
      if (drainMs === 0) this.abortAll();
      return this.stopping;
    }
    // First, before any listener closes: /readyz answers 503 and reloads are refused from here on.
    this.draining = true;
    this.stopping = this.drainAndStop(drainMs);
    return this.stopping;
  }

  private async drainAndStop(drainMs: number): Promise<{ drained: number; reset: number }> {
    await this.gate.idle();
    const before = this.sessionTotal;
    for (const listener of this.listeners.values()) this.retire(listener);
    this.listeners.clear();
    await this.waitForSessions(drainMs);
    const reset = this.sessionTotal;
    if (reset > 0) {
      this.logger.warn({ sessions: reset, drainTimeoutMs: drainMs }, "drain timeout reached; resetting remaining sessions");
      this.abortAll();
      await this.waitForSessions(2000);
    }
    // Last: /healthz and /metrics answer for as long as sessions drain.
    this.progress.stop();
    await this.admin?.close();
    return { drained: before - reset, reset };
  }

  /** Resets every live session, of every listener and generation. */
  private abortAll(): void {
    for (const session of [...this.sessions()]) session.abort(CloseReason.ProxyShutdown);
  }

  private async startListener(settings: ListenerSettings): Promise<void> {
    const listener = await this.bind(settings, undefined);
    this.listeners.set(settings.name, listener);
  }

  private async bind(settings: ListenerSettings, replacing: ProxyListener | undefined): Promise<ProxyListener> {
    const listener = new ProxyListener(
      settings,
      {
        socketOptions: this.socketOptions,
        hooks: this.hooks,
        logger: this.logger,
        nextSessionId: () => `${this.idPrefix}-${(++this.sessionCount).toString(36)}`,
        processBudget: this.processBudget,
        makeBudget: (name, max) => (this.worker ? this.worker.budget(`listener:${name}`, max) : new ConnectionBudget(max)),
        descriptorLimit: this.descriptorLimit,
        reusePort: this.worker?.listen,
        directForwarding: this.directForwarding,
      },
      // The sessions of the listener it replaces still count against its limit.
      replacing?.budget,
    );
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
    if (settings.upstreamTls?.verify === false) {
      this.logger.warn({ listener: settings.name }, "upstream.tls.verify is false: the upstream's certificate and name are not checked (anyone on the path can impersonate it)");
    }
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

  /**
   * The listeners, their upstreams' health and counts, and the last closed
   * sessions, for /status.json. Listeners retired by a reload but still
   * carrying sessions count in their name's `active`.
   */
  statusSnapshot(): StatusSnapshot {
    const now = Date.now();
    const listeners = [...this.listeners.values()].map((l) => {
      const address = l.address();
      let active = l.sessions.size;
      for (const r of this.retired) if (r.name === l.name) active += r.sessions.size;
      return {
        name: l.name,
        address: address === undefined ? null : formatHostPort({ host: address.address, port: address.port }),
        accepting: l.isAccepting,
        workers: 1,
        upstreams: upstreamStatuses(l.current.upstream.targets.map(formatHostPort), l.upstreams.healthRecords(), now),
        active,
        ...this.book.countsOf(l.name),
      };
    });
    return { draining: this.draining, listeners, closed: this.book.recentlyClosed() };
  }
}

function sameBinding(a: ListenerSettings, b: ListenerSettings): boolean {
  return a.listen.host === b.listen.host && a.listen.port === b.listen.port;
}
