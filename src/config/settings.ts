import type { LegOptions } from "../net/socket-options.js";
import type { ListenerSettings } from "../proxy/listener.js";
import type { KeepaliveConfig, ListenerConfig } from "./schema.js";

/** Turns one validated listener config into the settings its sessions use. */
export function listenerSettings(config: ListenerConfig): ListenerSettings {
  return {
    name: config.name,
    listen: config.listen,
    upstream: config.upstream.address,
    connectTimeoutMs: config.upstream.connectTimeout,
    idleTimeoutMs: config.idleTimeout,
    client: legOptions(config.client.keepalive, config.client.noDelay),
    upstreamLeg: legOptions(config.upstream.keepalive, config.upstream.noDelay),
  };
}

/**
 * A leg's socket options. TCP_USER_TIMEOUT defaults to idle + interval × count:
 * the same bound keepalive gives an idle leg then also holds for a leg with
 * unacknowledged data in flight, where Linux sends no keepalive probes.
 */
export function legOptions(keepalive: KeepaliveConfig, noDelay: boolean): LegOptions {
  const derived = keepalive.enabled ? keepalive.idle + keepalive.interval * keepalive.count : 0;
  return {
    keepalive: keepalive.enabled,
    keepaliveIdleMs: keepalive.idle,
    keepaliveIntervalMs: keepalive.interval,
    keepaliveCount: keepalive.count,
    userTimeoutMs: keepalive.userTimeout ?? derived,
    noDelay,
  };
}
