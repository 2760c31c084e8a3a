import { Counter, type Registry } from "prom-client";
import { METRIC_PREFIX } from "./families.js";

/** The admin server's connection counters (see the admin server's connection cap). */
export interface AdminConnectionMetrics {
  readonly refused: Counter;
  readonly evicted: Counter;
}

/**
 * Registers the admin connection counters on `registry`. Both exist at 0
 * from the start, so `increase()` sees the first refusal.
 */
export function registerAdminMetrics(registry: Registry): AdminConnectionMetrics {
  const registers = [registry];
  const refused = new Counter({
    name: `${METRIC_PREFIX}admin_connections_refused_total`,
    help: "Admin connections closed at once because admin.maxConnections were open and none was idle long enough to give way.",
    registers,
  });
  const evicted = new Counter({
    name: `${METRIC_PREFIX}admin_connections_evicted_total`,
    help: "Idle admin connections closed to make room for a new one at admin.maxConnections.",
    registers,
  });
  refused.inc(0);
  evicted.inc(0);
  return { refused, evicted };
}
