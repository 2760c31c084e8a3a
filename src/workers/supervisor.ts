import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from "prom-client";
import { AdminServer } from "../admin/admin-server.js";
import { listenerSettings } from "../config/settings.js";
import type { Config } from "../config/schema.js";
import { StartupError, StartupErrorCode } from "../errors.js";
import { ReloadGate, type Reloadable } from "../lifecycle/reload-gate.js";
import { type ReloadOutcome, restartNeededFor } from "../lifecycle/reload-outcome.js";
import type { Libc } from "../net/libc.js";
import { listenIp, openReusePort } from "../net/reuse-port.js";
import { ProxyMetrics } from "../metrics/proxy-metrics.js";
import type { ReloadResult } from "../proxy/hooks.js";
import { formatHostPort } from "../util/host-port.js";
import type { ConnectionsReport } from "../admin/connections.js";
import { mergeConnectionReports, parseWorkerAnswers, type WorkerListing } from "./merge-connections.js";
import { mergeStatusReports } from "./merge-status.js";
import { adminAuth } from "../admin/admin-auth.js";
import type { StatusSnapshot } from "../admin/status.js";
import type { FromWorker, ToWorker } from "./protocol.js";
import { SlotLeases, slotLimits } from "./slot-leases.js";
import { WorkerLink } from "./worker-link.js";

/** The worker program, next to this module in dist/. */
const WORKER_SCRIPT = fileURLToPath(new URL("./worker-process.js", import.meta.url));

/** How long a worker may take to start or to apply a reload. */
const WORKER_ANSWER_MS = 30_000;
/** How long a scrape or a listing waits for each worker. */
const WORKER_QUERY_MS = 10_000;
/** How long a worker asked to give slots back may take before it is counted as giving none. */
const REVOKE_MS = 1_000;
/** Between a worker's death and its replacement; a worker that dies at once is not restarted in a tight loop. */
const RESPAWN_DELAY_MS = 100;
/** After the drain timeout, how long workers get to exit before they are killed. */
const EXIT_GRACE_MS = 5_000;

/** The metric families the supervisor owns: the workers' copies are dropped when their metrics are merged. */
const SUPERVISOR_FAMILIES = new Set([
  "keepalive_proxy_config_reloads_total",
  "keepalive_proxy_draining",
  "keepalive_proxy_build_info",
  "keepalive_proxy_listener_up",
  "keepalive_proxy_workers",
  "keepalive_proxy_worker_restarts_total",
  "keepalive_proxy_admin_connections_refused_total",
  "keepalive_proxy_admin_connections_evicted_total",
]);

/** What a listing request (/connections, /status.json) asks each worker for. */
interface ListingOptions {
  readonly limit: number;
  readonly listener: string | undefined;
}

export interface SupervisorDeps {
  readonly logger: Logger;
  readonly libc: Libc;
  readonly workers: number;
}

/** A port-0 listener's port, held by a bound (not listening) SO_REUSEPORT socket so every worker binds the same one. */
interface Reservation {
  readonly fd: number;
  readonly port: number;
  readonly address: string;
}

/**
 * Several worker processes under one supervisor that handles no traffic.
 * Each worker accepts on its own SO_REUSEPORT socket, so the kernel spreads
 * connections without a hand-off. To an operator it is still one proxy: this
 * process takes the signals, runs the reload/drain state machine for all
 * workers (a reload is applied by all or by none), serves the one admin
 * server (metrics merged, /connections merged), leases connection-limit slots
 * to workers so the limits hold across them, and replaces a worker that dies.
 */
export class Supervisor implements Reloadable {
  private config: Config;
  private readonly links = new Map<number, WorkerLink>();
  /** Per worker slot: the listeners it accepts on now. */
  private readonly accepting = new Map<number, ReadonlySet<string>>();
  private readonly reservations = new Map<string, Reservation>();
  private readonly leases: SlotLeases;
  private readonly gate: ReloadGate;
  private readonly metrics = new ProxyMetrics();
  private draining = false;
  private lastLiveSessions = 0;
  private stopping: Promise<{ drained: number; reset: number }> | undefined;
  admin: AdminServer | undefined;
  /** The supervisor reads no socket: /connections comes from the workers (see mergedConnections). */
  readonly socketOptions = { read: () => undefined, tcpInfo: () => undefined };

  constructor(
    config: Config,
    private readonly deps: SupervisorDeps,
  ) {
    this.config = config;
    this.gate = new ReloadGate(this, deps.logger);
    this.leases = new SlotLeases({
      slots: () => [...this.links.keys()].filter((s) => this.links.get(s)?.alive === true),
      grant: (slot, key, n) => this.links.get(slot)?.send({ t: "slots.grant", key, n }),
      revoke: async (slot, key) => {
        const answer = await this.links.get(slot)?.request((id) => ({ t: "slots.revoke", key, id }), "slots.return", REVOKE_MS);
        return answer?.n ?? 0;
      },
    });
    this.metrics.observe(this);
  }

  /** The config in force. */
  get currentConfig(): Config {
    return this.config;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Live sessions across workers, as they reported at the last reload (the supervisor has none of its own). */
  get sessionTotal(): number {
    return this.lastLiveSessions;
  }

  /** Sessions live here: none (for the metrics' scrape-time byte count, which the workers do). */
  sessions(): Iterable<never> {
    return [];
  }

  /** A listener is up when every worker accepts on it. */
  get listeners(): ReadonlyMap<string, { readonly isAccepting: boolean }> {
    const view = new Map<string, { isAccepting: boolean }>();
    for (const { name } of this.config.listeners) {
      const everywhere = this.accepting.size === this.deps.workers && [...this.accepting.values()].every((set) => set.has(name));
      view.set(name, { isAccepting: everywhere && !this.draining });
    }
    return view;
  }

  /** Starts every worker; rejects (with every worker stopped) when any cannot start. */
  async start(): Promise<void> {
    // Read before any worker starts: a bad token file stops the start with nothing half-done.
    const auth = this.config.admin.listen === null ? undefined : adminAuth(this.config);
    await this.reservePorts(this.config);
    this.leases.setLimits(slotLimits(this.config, this.deps.workers));
    const results = await Promise.all(Array.from({ length: this.deps.workers }, (_, i) => this.startWorker(i + 1)));
    const failure = results.find((r) => r !== undefined);
    if (failure !== undefined) {
      for (const link of this.links.values()) link.child.kill("SIGKILL");
      this.releaseReservations(new Set());
      throw failure;
    }
    this.metrics.setWorkers(this.deps.workers);
    this.deps.logger.info({ workers: this.deps.workers }, "workers started");
    if (this.config.admin.listen !== null) {
      this.admin = new AdminServer(
        this.config.admin.listen,
        {
          source: this,
          registry: { contentType: this.metrics.registry.contentType, metrics: () => this.mergedMetrics() },
          logger: this.deps.logger,
          counters: this.metrics.adminConnections,
          listConnections: (options) => this.mergedConnections(options),
          listStatus: (options) => this.mergedStatus(options),
          auth,
        },
        { maxConnections: this.config.admin.maxConnections },
      );
      await this.admin.start();
    }
  }

  /** Forks the worker for `slot` and starts it; resolves with the error that stopped it, if any. */
  private async startWorker(slot: number): Promise<StartupError | undefined> {
    const link = new WorkerLink(slot, WORKER_SCRIPT, (l, message) => this.onMessage(l, message));
    this.links.set(slot, link);
    link.child.once("exit", (code, signal) => this.onExit(link, code, signal));
    const answer = await link.request(
      (id) => ({ t: "start", id, config: this.config, reservedPorts: this.reservedPorts(), limits: slotLimits(this.config, this.deps.workers) }),
      "started",
      WORKER_ANSWER_MS,
    );
    if (answer?.ok === true) {
      this.accepting.set(slot, new Set(answer.accepting));
      return undefined;
    }
    const message = answer === undefined ? `worker ${slot} did not start within ${WORKER_ANSWER_MS / 1000} s` : answer.error;
    return new StartupError(answer?.ok === false && answer.code === StartupErrorCode.SocketOptionsRefused ? StartupErrorCode.SocketOptionsRefused : StartupErrorCode.ListenFailed, message);
  }

  private onMessage(link: WorkerLink, message: FromWorker): void {
    if (message.t === "slots.need") this.leases.need(link.slot, message.key);
    else if (message.t === "slots.return") this.leases.returned(link.slot, message.key, message.n);
  }

  /** A worker exited: expected while stopping; otherwise it died, and is replaced. */
  private onExit(link: WorkerLink, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.links.get(link.slot) !== link) return;
    this.accepting.delete(link.slot);
    this.leases.forget(link.slot);
    if (this.draining) return;
    this.metrics.workerRestarted();
    this.metrics.setWorkers(this.accepting.size);
    this.deps.logger.error({ workerSlot: link.slot, workerPid: link.child.pid, code, signal }, "worker died; its sessions ended with it; starting a replacement");
    setTimeout(() => void this.replace(link.slot), RESPAWN_DELAY_MS);
  }

  private async replace(slot: number): Promise<void> {
    if (this.draining) return;
    const failure = await this.startWorker(slot);
    if (failure === undefined) {
      this.metrics.setWorkers(this.accepting.size);
      this.deps.logger.info({ workerSlot: slot, workerPid: this.links.get(slot)?.child.pid }, "worker replaced");
      return;
    }
    this.deps.logger.error({ workerSlot: slot, err: failure.message }, "replacement worker failed to start; trying again in 1 s");
    this.links.get(slot)?.child.kill("SIGKILL");
    setTimeout(() => void this.replace(slot), 1_000);
  }

  /** Serialised, refused once draining, never rejects: see ReloadGate. */
  requestReload(load: () => Config): Promise<void> {
    return this.gate.request(load);
  }

  countReload(result: ReloadResult): void {
    this.metrics.hooks.configReloaded?.(result);
  }

  /**
   * Applies `next` in every worker, or in none: when one refuses it (a
   * listener it cannot bind), those that applied it go back to the running
   * config and the reload fails.
   */
  async reload(next: Config): Promise<ReloadOutcome> {
    const previous = this.config;
    await this.reservePorts(next);
    const limits = slotLimits(next, this.deps.workers);
    const links = [...this.links.values()].filter((l) => l.alive);
    const answers = await Promise.all(
      links.map((l) => l.request((id) => ({ t: "reload", id, config: next, reservedPorts: this.reservedPorts(), limits }), "reloaded", WORKER_ANSWER_MS)),
    );
    const refused = answers.find((a) => a?.ok !== true);
    if (refused !== undefined) {
      await Promise.all(
        links.map((l, i) =>
          answers[i]?.ok === true
            ? l.request((id) => ({ t: "reload", id, config: previous, reservedPorts: this.reservedPorts(), limits: slotLimits(previous, this.deps.workers) }), "reloaded", WORKER_ANSWER_MS)
            : undefined,
        ),
      );
      this.releaseReservations(new Set(previous.listeners.map((l) => l.name)));
      this.countReload("failure");
      throw new Error(refused === undefined ? "a worker did not answer the reload" : refused.ok ? "a worker refused the reload" : refused.error);
    }
    this.lastLiveSessions = 0;
    links.forEach((l, i) => {
      const a = answers[i];
      if (a?.ok !== true) return;
      this.accepting.set(l.slot, new Set(a.accepting));
      this.lastLiveSessions += a.liveSessions;
    });
    this.config = next;
    this.releaseReservations(new Set(next.listeners.map((l) => l.name)));
    this.leases.setLimits(limits);
    this.countReload("success");
    const first = answers[0];
    const outcome = first?.ok === true ? first.outcome : { started: [], updated: [], stopped: [], renamed: [], restartNeededFor: [] };
    return { ...outcome, restartNeededFor: restartNeededFor(previous, next) };
  }

  /**
   * Drains every worker within one drain timeout (each resets what is left at
   * its end), waits for them to exit, then closes the admin server. A second
   * call with drainMs 0 (a second signal) resets every session now.
   */
  shutdown(drainMs = this.config.shutdown.drainTimeout): Promise<{ drained: number; reset: number }> {
    if (this.stopping !== undefined) {
      if (drainMs === 0) for (const link of this.links.values()) link.send({ t: "abort-all" });
      return this.stopping;
    }
    this.draining = true;
    this.stopping = this.drainAll(drainMs);
    return this.stopping;
  }

  private async drainAll(drainMs: number): Promise<{ drained: number; reset: number }> {
    await this.gate.idle();
    const totals = { drained: 0, reset: 0 };
    await Promise.all(
      [...this.links.values()].map(async (link) => {
        if (!link.alive) return;
        const exited = new Promise<void>((resolve) => link.child.once("exit", () => resolve()));
        const drained = new Promise<void>((resolve) => {
          link.child.on("message", (m: FromWorker) => {
            if (m.t !== "drained") return;
            totals.drained += m.drained;
            totals.reset += m.reset;
            resolve();
          });
        });
        link.send({ t: "drain", drainMs } satisfies ToWorker);
        const killTimer = setTimeout(() => link.child.kill("SIGKILL"), drainMs + EXIT_GRACE_MS);
        await Promise.all([exited, Promise.race([drained, exited])]);
        clearTimeout(killTimer);
      }),
    );
    await this.admin?.close();
    this.releaseReservations(new Set());
    return totals;
  }

  /** Every worker's metrics merged (counters and gauges summed, histograms merged), with the supervisor's own. */
  private async mergedMetrics(): Promise<string> {
    const fromWorkers = await Promise.all(
      [...this.links.values()].map((l) => l.request((id) => ({ t: "metrics", id }), "metrics", WORKER_QUERY_MS)),
    );
    const own = await this.metrics.registry.getMetricsAsJSON();
    const lists: MetricObjectWithValues<MetricValue<string>>[][] = [own];
    for (const answer of fromWorkers) if (answer !== undefined) lists.push(answer.metrics.filter((m) => !SUPERVISOR_FAMILIES.has(m.name)));
    return AggregatorRegistry.aggregate(lists).metrics();
  }

  /** Every worker's /connections listing, merged, each entry with its worker. */
  private async *mergedConnections(options: ListingOptions): AsyncGenerator<string, unknown> {
    const answers = await this.askEveryWorker((id) => ({ t: "connections", id, ...options }), "connections");
    const merged = mergeConnectionReports(parseWorkerAnswers<ConnectionsReport>(answers), options.limit);
    yield `${JSON.stringify(merged)}\n`;
    return { total: merged.total, returned: merged.returned };
  }

  /** Asks every worker for a listing and collects the answers, each with its worker (one that does not answer in time is left out). */
  private async askEveryWorker(make: (id: number) => ToWorker, answer: "connections" | "status"): Promise<WorkerListing[]> {
    const links = [...this.links.values()];
    const answers = await Promise.all(links.map((l) => l.request(make, answer, WORKER_QUERY_MS)));
    return links.flatMap((l, i) => {
      const json = answers[i]?.json;
      return json === undefined ? [] : [{ worker: l.slot, json }];
    });
  }

  /** Every worker's /status.json, merged: listeners summed by name, sessions and closed sessions tagged with their worker. */
  /** The supervisor's own status holds nothing: /status.json comes from the workers (see mergedStatus). */
  statusSnapshot(): StatusSnapshot {
    return { draining: this.draining, listeners: [], closed: [] };
  }

  /** Every worker's /status.json, merged: listeners summed by name, sessions and closed sessions tagged with their worker. */
  private async *mergedStatus(options: ListingOptions): AsyncGenerator<string, unknown> {
    const reports = await this.askEveryWorker((id) => ({ t: "status", id, ...options }), "status");
    const merged = mergeStatusReports(reports, options.limit, this.draining);
    yield `${JSON.stringify(merged)}\n`;
    return { total: merged.sessions.total, returned: merged.sessions.returned };
  }

  /** Holds a port for every port-0 listener of `config` that has none yet. */
  private async reservePorts(config: Config): Promise<void> {
    for (const l of config.listeners) {
      const settings = listenerSettings(l);
      if (settings.listen.port !== 0) continue;
      const ip = await listenIp(settings.listen.host);
      const key = `${ip}`;
      const held = this.reservations.get(l.name);
      if (held !== undefined && held.address === key) continue;
      if (held !== undefined) this.deps.libc.closeFd(held.fd);
      const socket = openReusePort(this.deps.libc, ip, 0);
      if ("errno" in socket) {
        throw new StartupError(StartupErrorCode.ListenFailed, `listener "${l.name}" cannot reserve a port on ${formatHostPort(settings.listen)}: ${socket.errno}`);
      }
      this.reservations.set(l.name, { fd: socket.fd, port: socket.port, address: key });
    }
  }

  private reservedPorts(): Record<string, number> {
    return Object.fromEntries([...this.reservations].map(([name, r]) => [name, r.port]));
  }

  /** Closes the reservations of listeners not in `keep`. */
  private releaseReservations(keep: ReadonlySet<string>): void {
    for (const [name, r] of this.reservations) {
      if (keep.has(name)) continue;
      this.deps.libc.closeFd(r.fd);
      this.reservations.delete(name);
    }
  }
}
