import type { Logger } from "pino";
import { adminAuth } from "./admin/admin-auth.js";
import { AdminServer } from "./admin/admin-server.js";
import type { Config } from "./config/schema.js";
import { StartupError, StartupErrorCode } from "./errors.js";
import { KeepaliveProxy, type WorkerContext } from "./lifecycle/keepalive-proxy.js";
import { ProxyMetrics } from "./metrics/proxy-metrics.js";
import { checkDescriptorBudget, softDescriptorLimit } from "./net/descriptor-limit.js";
import { DirectForwarding } from "./net/direct-forwarding.js";
import { loadLibc, type Libc } from "./net/libc.js";
import { SocketOptions } from "./net/socket-options.js";
import { verifySocketOptions } from "./net/verify-socket-options.js";
import { combineHooks, type ProxyHooks } from "./proxy/hooks.js";

export { KeepaliveProxy, type WorkerContext } from "./lifecycle/keepalive-proxy.js";
export type { ReloadOutcome } from "./lifecycle/reload-outcome.js";

/** What the composition root is given; everything else it builds. */
export interface ProxyDeps {
  readonly logger: Logger;
  /** Set when this proxy is one worker process of several under a supervisor. */
  readonly worker?: WorkerContext;
  /** Replaceable for tests; loaded from the system otherwise. */
  readonly libc?: Libc;
  /** Extra observers (tests, metrics). */
  readonly hooks?: ProxyHooks;
}

/** Composition root: checks the kernel, builds the proxy and starts its listeners. */
export async function startProxy(config: Config, deps: ProxyDeps): Promise<KeepaliveProxy> {
  if (process.platform !== "linux") {
    throw new StartupError(StartupErrorCode.Platform, `keepalive-proxy needs Linux (TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT); this is ${process.platform}`);
  }
  const libc = deps.libc ?? loadLibc();
  const socketOptions = new SocketOptions(libc);
  verifySocketOptions(socketOptions, config);
  // Before any listener opens: raise RLIMIT_NOFILE, warn if it cannot hold 2 × maxConnections + 64.
  // (In a worker the supervisor did it for the whole process tree, whose limits the workers inherit.)
  if (deps.worker === undefined) checkDescriptorBudget(libc, config, deps.logger);
  // Read before any listener opens: a bad token file stops the start with nothing half-done.
  const auth = config.admin.listen !== null && deps.worker === undefined ? adminAuth(config) : undefined;
  const metrics = new ProxyMetrics();
  const hooks = deps.hooks ? combineHooks(metrics.hooks, deps.hooks) : metrics.hooks;
  const proxy = new KeepaliveProxy(config, socketOptions, deps.logger, hooks, deps.worker, softDescriptorLimit(libc), DirectForwarding.create(libc));
  proxy.metrics = metrics;
  metrics.observe(proxy);
  try {
    await proxy.start();
    // A worker's admin view is served by its supervisor.
    if (config.admin.listen !== null && deps.worker === undefined) {
      proxy.admin = new AdminServer(
        config.admin.listen,
        { source: proxy, registry: metrics.registry, logger: deps.logger, counters: metrics.adminConnections, auth },
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
