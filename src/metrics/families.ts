import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { BuildInfo } from "./build-info.js";
import { CONNECT_DURATION_BUCKETS, SESSION_DURATION_BUCKETS } from "./label-sets.js";

/** Every metric of the project starts with this. */
export const METRIC_PREFIX = "keepalive_proxy_";

/** The metric families the proxy updates; the ones read only at scrape time are not kept. */
export interface Families {
  readonly accepted: Counter<"listener">;
  readonly active: Gauge<"listener">;
  readonly closed: Counter<"listener" | "side" | "reason">;
  readonly attempts: Counter<"listener" | "result">;
  readonly connectDuration: Histogram<"listener">;
  readonly sessionDuration: Histogram<"listener">;
  readonly bytes: Counter<"listener" | "direction">;
  readonly reloads: Counter<"result">;
  readonly acceptErrors: Counter<"listener" | "errno">;
  readonly optionFailures: Counter<"listener" | "side" | "option">;
  readonly workers: Gauge;
  readonly workerRestarts: Counter;
}

/** What the families read at scrape time. */
export interface ScrapeTimeReaders {
  /** Adds the bytes live sessions read since the last scrape. */
  readonly countLiveBytes: () => void;
  /** Sets 1 or 0 per configured listener (after a reset, so removed listeners drop out). */
  readonly listenerUp: (gauge: Gauge<"listener">) => void;
  readonly isDraining: () => boolean;
}

/**
 * Registers every keepalive-proxy metric on `registry`. Names, types, labels
 * and help texts here are what METRICS.md documents (a test holds them equal).
 */
export function registerFamilies(registry: Registry, build: BuildInfo, read: ScrapeTimeReaders): Families {
  const registers = [registry];
  const families: Families = {
    accepted: new Counter({ name: `${METRIC_PREFIX}connections_accepted_total`, help: "Client connections accepted.", labelNames: ["listener"] as const, registers }),
    active: new Gauge({
      name: `${METRIC_PREFIX}connections_active`,
      help: "Sessions open now: accepted and not yet closed on both legs.",
      labelNames: ["listener"] as const,
      registers,
    }),
    closed: new Counter({
      name: `${METRIC_PREFIX}sessions_closed_total`,
      help: "Sessions closed, by the side blamed and the first cause recorded.",
      labelNames: ["listener", "side", "reason"] as const,
      registers,
    }),
    attempts: new Counter({
      name: `${METRIC_PREFIX}upstream_connect_attempts_total`,
      help: "Upstream connect attempts, one per address tried, by result; every result but ok is a failure.",
      labelNames: ["listener", "result"] as const,
      registers,
    }),
    connectDuration: new Histogram({
      name: `${METRIC_PREFIX}upstream_connect_duration_seconds`,
      help: "Time of successful TCP connects to an upstream address.",
      labelNames: ["listener"] as const,
      buckets: [...CONNECT_DURATION_BUCKETS],
      registers,
    }),
    sessionDuration: new Histogram({
      name: `${METRIC_PREFIX}session_duration_seconds`,
      help: "Lifetime of closed sessions, from accept to the close of both legs.",
      labelNames: ["listener"] as const,
      buckets: [...SESSION_DURATION_BUCKETS],
      registers,
    }),
    bytes: new Counter({
      name: `${METRIC_PREFIX}forwarded_bytes_total`,
      help: "Bytes read from one leg to be written to the other; open sessions are counted up to the scrape.",
      labelNames: ["listener", "direction"] as const,
      registers,
      collect: read.countLiveBytes,
    }),
    reloads: new Counter({
      name: `${METRIC_PREFIX}config_reloads_total`,
      help: "Config reloads (SIGHUP): applied, failed, or refused during shutdown.",
      labelNames: ["result"] as const,
      registers,
    }),
    acceptErrors: new Counter({
      name: `${METRIC_PREFIX}accept_errors_total`,
      help: "Clients the proxy could not serve for lack of its own descriptors, buffers or memory; each was reset.",
      labelNames: ["listener", "errno"] as const,
      registers,
    }),
    workers: new Gauge({
      name: `${METRIC_PREFIX}workers`,
      help: "Worker processes accepting and forwarding now (1 for a single-process proxy).",
      registers,
    }),
    workerRestarts: new Counter({
      name: `${METRIC_PREFIX}worker_restarts_total`,
      help: "Worker processes that died and were replaced by the supervisor.",
      registers,
    }),
    optionFailures: new Counter({
      name: `${METRIC_PREFIX}socket_option_failures_total`,
      help: "Socket options the kernel refused on a live socket (the startup check makes these rare).",
      labelNames: ["listener", "side", "option"] as const,
      registers,
    }),
  };
  const listenerUp: Gauge<"listener"> = new Gauge({
    name: `${METRIC_PREFIX}listener_up`,
    help: "1 when the configured listener is bound and accepting, 0 when it is not (failed, or stopped by shutdown).",
    labelNames: ["listener"] as const,
    registers,
    collect: () => read.listenerUp(listenerUp),
  });
  const draining: Gauge = new Gauge({
    name: `${METRIC_PREFIX}draining`,
    help: "1 from the start of shutdown: no new sessions, live ones finishing.",
    registers,
    collect: () => draining.set(read.isDraining() ? 1 : 0),
  });
  new Gauge({
    name: `${METRIC_PREFIX}build_info`,
    help: "Always 1; the labels say which keepalive-proxy and which Node run.",
    labelNames: ["version", "node_version"] as const,
    registers,
  }).set({ version: build.version, node_version: build.nodeVersion }, 1);
  return families;
}
