import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { OptionSide, ProxyHooks, TlsHandshakeResult } from "../proxy/hooks.js";
import { METRIC_PREFIX } from "./families.js";

/** Every TLS handshake result, for zero series. */
export const ALL_TLS_HANDSHAKE_RESULTS = ["ok", "failed", "timeout"] as const satisfies readonly TlsHandshakeResult[];

/** TLS handshake time, seconds: a loopback TLS 1.3 handshake takes about a millisecond; 10 s is the default handshake timeout. */
const TLS_HANDSHAKE_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The TLS metric families, registered on the proxy's registry, fed through
 * the proxy hooks. Series of a listener's TLS leg are created at zero when it
 * is first reported with TLS, so plaintext listeners add none.
 */
export function registerTlsMetrics(registry: Registry): Pick<ProxyHooks, "tlsHandshake" | "tlsCertificate"> {
  const registers = [registry];
  const handshakes = new Counter({
    name: `${METRIC_PREFIX}tls_handshakes_total`,
    help: "TLS handshakes on each leg, by result (ok, failed, timeout).",
    labelNames: ["listener", "side", "result"] as const,
    registers,
  });
  const duration = new Histogram({
    name: `${METRIC_PREFIX}tls_handshake_duration_seconds`,
    help: "Time from accept (client leg) or TCP connect (upstream leg) to a finished TLS handshake, for successful ones.",
    labelNames: ["listener", "side"] as const,
    buckets: [...TLS_HANDSHAKE_BUCKETS],
    registers,
  });
  const expiry = new Gauge({
    name: `${METRIC_PREFIX}tls_certificate_expiry_timestamp_seconds`,
    help: "When the earliest certificate a leg presents expires (notAfter), seconds since the epoch: the client leg's served certificates, the upstream leg's client certificate.",
    labelNames: ["listener", "side"] as const,
    // Workers serve the same files; the merged scrape keeps the earliest, never a sum.
    aggregator: "min",
    registers,
  });
  const seen = new Set<string>();
  const zero = (listener: string, side: OptionSide): void => {
    const key = `${listener}\u0000${side}`;
    if (seen.has(key)) return;
    seen.add(key);
    for (const result of ALL_TLS_HANDSHAKE_RESULTS) handshakes.inc({ listener, side, result }, 0);
    duration.zero({ listener, side });
  };
  return {
    tlsHandshake: (listener, side, result, durationMs) => {
      zero(listener, side);
      handshakes.inc({ listener, side, result });
      if (result === "ok") duration.observe({ listener, side }, durationMs / 1000);
    },
    tlsCertificate: (listener, side, expiresAt) => {
      zero(listener, side);
      expiry.set({ listener, side }, expiresAt);
    },
  };
}
