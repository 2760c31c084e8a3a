import type { Logger } from "pino";
import { listConnections } from "../admin/connections.js";
import { SLICE_BUDGET_MS, SLICE_REST_FACTOR } from "../admin/admin-server.js";
import { SliceScheduler } from "../admin/slice-scheduler.js";
import { statusReport } from "../admin/status.js";
import { StartupError } from "../errors.js";
import { createLogger, flushLogger } from "../log/logger.js";
import { type KeepaliveProxy, startProxy, type WorkerContext } from "../main.js";
import { loadLibc } from "../net/libc.js";
import { tuneMallocForForwarding } from "../net/malloc-tuning.js";
import { LeasedBudget } from "../proxy/admission/leased-budget.js";
import type { FromWorker, SlotLimits, ToWorker, WorkerConfig } from "./protocol.js";

/**
 * A worker process: forked by the supervisor, it runs one proxy on its own
 * SO_REUSEPORT sockets and does what the supervisor's messages say. It takes
 * no signal of its own (a Ctrl-C reaches the whole process group, and only the
 * supervisor decides), and it ends when its supervisor does.
 */

const send = (message: FromWorker): void => {
  process.send?.(message);
};

const budgets = new Map<string, LeasedBudget>();
let limits: SlotLimits = {};
let reservedPorts: Readonly<Record<string, number>> = {};
let proxy: KeepaliveProxy | undefined;
let logger: Logger | undefined;
let draining = false;

function budget(key: string, max: number): LeasedBudget {
  let b = budgets.get(key);
  if (b === undefined) {
    b = new LeasedBudget(key, max, {
      need: (k) => send({ t: "slots.need", key: k }),
      giveBack: (k, n) => send({ t: "slots.return", key: k, n }),
    });
    budgets.set(key, b);
  }
  const limit = limits[key];
  b.setLimit(limit?.max ?? max, limit?.keep ?? 1);
  return b;
}

function applyLimits(next: SlotLimits): void {
  limits = next;
  for (const [key, b] of budgets) b.setLimit(next[key]?.max ?? 0, next[key]?.keep ?? 1);
}

function accepting(): string[] {
  return [...(proxy?.listeners.values() ?? [])].filter((l) => l.isAccepting).map((l) => l.name);
}

/** This worker's number (1…N), given by the supervisor; a replacement takes the number of the one it replaces. */
const slot = Number(process.env.KEEPALIVE_PROXY_WORKER ?? "1");

async function start(id: number, message: WorkerConfig): Promise<void> {
  reservedPorts = message.reservedPorts;
  logger = createLogger({ level: message.config.log.level, format: message.config.log.format, worker: slot });
  const libc = loadLibc();
  tuneMallocForForwarding(libc);
  const context: WorkerContext = {
    id: slot,
    budget,
    listen: { libc, reservedPort: (name) => reservedPorts[name] },
  };
  try {
    proxy = await startProxy(message.config, { logger, libc, worker: context });
    send({ t: "started", id, ok: true, accepting: accepting() });
  } catch (error) {
    const code = error instanceof StartupError ? error.code : undefined;
    send({ t: "started", id, ok: false, error: error instanceof Error ? error.message : String(error), code });
    await flushLogger(logger);
    process.exit(1);
  }
}

async function reload(id: number, message: WorkerConfig): Promise<void> {
  if (proxy === undefined) return;
  reservedPorts = message.reservedPorts;
  try {
    const outcome = await proxy.reload(message.config);
    if (logger) logger.level = message.config.log.level;
    send({ t: "reloaded", id, ok: true, outcome, liveSessions: proxy.sessionTotal, accepting: accepting() });
  } catch (error) {
    send({ t: "reloaded", id, ok: false, error: error instanceof Error ? error.message : String(error) });
  }
}

async function drain(drainMs: number): Promise<void> {
  if (draining || proxy === undefined) return;
  draining = true;
  const result = await proxy.shutdown(drainMs);
  send({ t: "drained", ...result });
  if (logger) await flushLogger(logger);
  process.disconnect?.();
  process.exit(0);
}

/** Runs a sliced listing (/connections or /status.json) to the end and sends its text as the answer `t`. */
async function answerListing(t: "connections" | "status", id: number, pieces: AsyncGenerator<string, unknown>): Promise<void> {
  const text: string[] = [];
  for (let piece = await pieces.next(); piece.done !== true; piece = await pieces.next()) text.push(piece.value);
  send({ t, id, json: text.join("") });
}

// The same slices as the admin server's own listing: a worker's forwarding stalls no longer than a single process's.
const slices = new SliceScheduler(SLICE_BUDGET_MS, SLICE_REST_FACTOR);

function handle(message: ToWorker): void {
  switch (message.t) {
    case "start":
      applyLimits(message.limits);
      void start(message.id, message);
      return;
    case "reload":
      applyLimits(message.limits);
      void reload(message.id, message);
      return;
    case "drain":
      void drain(message.drainMs);
      return;
    case "abort-all":
      void proxy?.shutdown(0);
      return;
    case "metrics":
      void proxy?.metrics?.registry.getMetricsAsJSON().then((metrics) => send({ t: "metrics", id: message.id, metrics }));
      return;
    case "connections":
      if (proxy) void answerListing("connections", message.id, listConnections(proxy, { limit: message.limit, listener: message.listener }, slices));
      return;
    case "status":
      if (proxy) void answerListing("status", message.id, statusReport(proxy, { limit: message.limit, listener: message.listener }, slices));
      return;
    case "slots.grant":
      budgets.get(message.key)?.granted(message.n);
      return;
    case "slots.revoke":
      send({ t: "slots.return", key: message.key, n: budgets.get(message.key)?.revoke() ?? 0, revokeId: message.id });
      return;
  }
}

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1", "SIGUSR2"] as const) process.on(signal, () => {});
process.on("message", (message: ToWorker) => {
  try {
    handle(message);
  } catch (error) {
    logger?.error({ err: error }, "worker failed to handle a supervisor message");
  }
});
// The supervisor is gone (killed): nobody can stop this worker any more, so it stops now,
// resetting its sessions (a drain in progress included), as the kernel would for a killed proxy.
process.on("disconnect", () => {
  void (proxy?.shutdown(0) ?? Promise.resolve())
    .then(() => (logger ? flushLogger(logger) : undefined))
    .then(() => process.exit(0));
});
