import { stringify } from "yaml";
import { listenerSettings } from "../config/settings.js";
import type { Config } from "../config/schema.js";
import { writtenConfig } from "../config/written-form.js";
import type { Libc } from "../net/libc.js";
import { expectedKernelOptions, type KernelLegOptions, SocketOptions } from "../net/socket-options.js";
import { UpstreamPool } from "../proxy/upstream/upstream-pool.js";
import { formatHostPort } from "../util/host-port.js";
import { ExitCode } from "./exit-codes.js";
import { describeListenerTls, upstreamTlsReport } from "../tls/check-tls.js";

export interface CheckOptions {
  /** Open one connection to each upstream and read its options back from the kernel. */
  readonly connect: boolean;
  readonly libc: Libc;
  /** Where report lines go. */
  readonly print: (line: string) => void;
}

/**
 * `keepalive-proxy check`: prints the effective config with defaults filled
 * in and the socket options each leg will get; with `connect`, also proves
 * each upstream reachable and shows what the kernel really set.
 */
export async function checkConfig(config: Config, options: CheckOptions): Promise<ExitCode> {
  const socketOptions = new SocketOptions(options.libc);
  options.print("# effective config (defaults filled in)");
  options.print(stringify(toDisplay(config)).trimEnd());
  options.print("");
  options.print("# socket options per listener and leg (kernel units)");
  let refused = false;
  let unreachable = false;
  for (const listener of config.listeners) {
    const settings = listenerSettings(listener);
    for (const [leg, legOptions] of [["client", settings.client], ["upstream", settings.upstreamLeg]] as const) {
      options.print(`${listener.name} ${leg}: ${describeKernelOptions(expectedKernelOptions(legOptions))}`);
      const problems = socketOptions.verify(legOptions, settings.upstream.targets[0]?.host.includes(":") ? 6 : 4);
      for (const p of problems) options.print(`  REFUSED ${p}`);
      if (problems.length > 0) refused = true;
    }
  }
  const tls = config.listeners.map((l) => describeListenerTls(l)).filter((t) => t.lines.length > 0);
  if (tls.length > 0) {
    options.print("");
    options.print("# TLS (files read, keys matched to their certificates)");
    for (const t of tls) for (const line of t.lines) options.print(line);
  }
  if (options.connect) {
    options.print("");
    options.print("# upstream reachability (one connection each, options read back from the kernel)");
    for (const listener of config.listeners) {
      const settings = listenerSettings(listener);
      for (const target of settings.upstream.targets) {
        // One attempt per upstream, no retries: check reports each one as it is.
        const pool = new UpstreamPool({ ...settings.upstream, targets: [target], retries: 0 });
        const outcome = await pool.connect({
          signal: new AbortController().signal,
          onAttempt: () => {},
          prepare: (socket) => socketOptions.apply(socket, settings.upstreamLeg),
        });
        const name = formatHostPort(target);
        if (!outcome.ok) {
          unreachable = true;
          options.print(`${listener.name} upstream ${name}: UNREACHABLE (${outcome.result}${outcome.errno ? `, ${outcome.errno}` : ""}) after ${Math.round(outcome.durationMs)}ms`);
          continue;
        }
        const got = socketOptions.read(outcome.socket);
        const secured = settings.upstreamTls ? await upstreamTlsReport(outcome.socket, outcome.host, settings.upstreamTls, settings.upstream.connectTimeoutMs) : undefined;
        outcome.socket.destroy();
        if (secured?.ok === false) unreachable = true;
        options.print(
          `${listener.name} upstream ${name}: reachable at ${outcome.address} in ${Math.round(outcome.durationMs)}ms; kernel reports ${got ? describeKernelOptions(got) : "nothing (socket closed)"}${secured ? `; ${secured.line}` : ""}`,
        );
      }
    }
  }
  if (refused) return ExitCode.StartupFailed;
  return unreachable ? ExitCode.UpstreamUnreachable : ExitCode.Ok;
}

/** `SO_KEEPALIVE=1 TCP_KEEPIDLE=60s …`, one line. */
export function describeKernelOptions(o: KernelLegOptions): string {
  return [
    `SO_KEEPALIVE=${o.keepalive ? 1 : 0}`,
    `TCP_KEEPIDLE=${o.keepaliveIdleSeconds}s`,
    `TCP_KEEPINTVL=${o.keepaliveIntervalSeconds}s`,
    `TCP_KEEPCNT=${o.keepaliveCount}`,
    `TCP_USER_TIMEOUT=${o.userTimeoutMs}ms`,
    `TCP_NODELAY=${o.noDelay ? 1 : 0}`,
  ].join(" ");
}

/**
 * The config as an operator would write it: addresses and durations as text,
 * derived user timeouts filled in. It reads back as the same effective config.
 */
function toDisplay(config: Config): unknown {
  const filled: Config = {
    ...config,
    listeners: config.listeners.map((l) => {
      const settings = listenerSettings(l);
      return {
        ...l,
        client: { ...l.client, keepalive: { ...l.client.keepalive, userTimeout: settings.client.userTimeoutMs } },
        upstream: { ...l.upstream, keepalive: { ...l.upstream.keepalive, userTimeout: settings.upstreamLeg.userTimeoutMs } },
      };
    }),
  };
  return writtenConfig(filled);
}
