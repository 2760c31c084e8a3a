import type { LegOptions } from "../net/socket-options.js";
import { AccessList } from "../proxy/admission/access-list.js";
import type { ListenerSettings } from "../proxy/listener.js";
import type { HostPort } from "../util/host-port.js";
import type { KeepaliveConfig, ListenerConfig, UpstreamConfig } from "./schema.js";
import { loadClientTls, loadUpstreamTls } from "../tls/material.js";

/**
 * Turns one validated listener config into the settings its sessions use.
 * TLS certificates, keys and CAs are read here, so every start and reload
 * (in every worker) serves the files as they are now; loadConfig has already
 * refused ones that cannot be used.
 */
export function listenerSettings(config: ListenerConfig): ListenerSettings {
  const pp = config.client.proxyProtocol;
  return {
    name: config.name,
    listen: config.listen,
    upstream: {
      targets: upstreamTargets(config.upstream),
      balance: config.upstream.balance,
      retries: config.upstream.retries,
      retryBackoffMs: config.upstream.retryBackoff,
      failureThreshold: config.upstream.failureThreshold,
      cooldownMs: config.upstream.cooldown,
      connectTimeoutMs: config.upstream.connectTimeout,
    },
    idleTimeoutMs: config.idleTimeout,
    maxSessionDurationMs: config.maxSessionDuration,
    halfCloseTimeoutMs: config.halfCloseTimeout,
    maxConnections: config.maxConnections,
    access: AccessList.from(config.access.allow, config.access.deny),
    sendProxyProtocol: config.upstream.proxyProtocol === "off" ? undefined : config.upstream.proxyProtocol,
    acceptProxyProtocol:
      pp.accept === "off" ? undefined : { accept: pp.accept, trusted: AccessList.from(pp.trustedSources, []), headerTimeoutMs: pp.headerTimeout },
    client: legOptions(config.client.keepalive, config.client.noDelay),
    upstreamLeg: legOptions(config.upstream.keepalive, config.upstream.noDelay),
    clientTls: config.client.tls ? loadClientTls(config.client.tls, `listeners.${config.name}.client.tls`) : undefined,
    upstreamTls: config.upstream.tls?.enabled ? loadUpstreamTls(config.upstream.tls, `listeners.${config.name}.upstream.tls`) : undefined,
  };
}

/** The upstream's addresses in written order. */
export function upstreamTargets(upstream: UpstreamConfig): HostPort[] {
  return upstream.addresses ?? (upstream.address ? [upstream.address] : []);
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
